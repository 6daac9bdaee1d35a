"""The client commands of `syncjobs`: tokens, jobs, apply and demo, each a call or two to the REST API.
YAML, apply and demo are imported by the commands that use them: every `syncjobs` start builds this parser."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from syncjobs.client import CLIENT_ENVIRONMENT, ApiClient, ClientError, table

JOB_COLUMNS = ["id", "name", "enabled", "syncMode", "schedule", "nextRunAt", "lastStatus"]
RUN_COLUMNS = ["id", "trigger", "status", "scheduledFor", "durationMs", "error"]
TOKEN_COLUMNS = ["id", "name", "scope", "createdAt", "lastUsedAt", "expiresAt"]


def _client_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--api", help="the API's base URL (default: SYNCJOBS_API)")
    parser.add_argument("--token", help="an API token (default: SYNCJOBS_TOKEN)")
    parser.add_argument("--workspace", help="a workspace id (default: SYNCJOBS_WORKSPACE)")
    parser.add_argument("--json", action="store_true", help="print the API's JSON instead of a table")
    parser.epilog = f"Reads {CLIENT_ENVIRONMENT}."
    return parser


def add_client_commands(commands: Any) -> None:
    """`token` (create via the API, list, revoke), `jobs`, `apply`, `demo` under `commands`."""
    token = commands.add_parser("token", help="manage API tokens", description="Manage API tokens.")
    token_commands = token.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = _client_options(
        token_commands.add_parser(
            "create",
            help="create a token and print it once",
            description="Create a workspace token through the API (printed once, stored hashed), or with --admin "
            "an admin token straight in the database.",
        )
    )
    create.add_argument("--name", default="cli", help="a label for the token")
    create.add_argument("--scope", choices=["full", "read"], default="full", help="read: GET only")
    create.add_argument(
        "--admin", action="store_true", help="a token for every workspace (needs SYNCJOBS_MONGODB_URI, not the API)"
    )
    create.epilog = f"Reads {CLIENT_ENVIRONMENT}; with --admin SYNCJOBS_MONGODB_URI and SYNCJOBS_DATABASE."
    rotate = token_commands.add_parser(
        "rotate-admin",
        help="replace every admin token by one new one and print it once",
        description="Create an admin token and revoke every other (SYNCJOBS_ADMIN_TOKEN's included) straight in the "
        "database; an api started again with a revoked SYNCJOBS_ADMIN_TOKEN does not bring it back.",
        epilog="Reads SYNCJOBS_MONGODB_URI and SYNCJOBS_DATABASE.",
    )
    rotate.add_argument("--name", default="admin (rotated)", help="a label for the new token")
    _client_options(token_commands.add_parser("list", help="list the workspace's tokens", description="List tokens."))
    revoke = _client_options(token_commands.add_parser("revoke", help="revoke a token", description="Revoke a token."))
    revoke.add_argument("id", help="the token's id (from `token list`)")

    jobs = commands.add_parser("jobs", help="list, create and run sync jobs", description="Sync jobs over the API.")
    job_commands = jobs.add_subparsers(dest="action", required=True, metavar="ACTION")
    _client_options(job_commands.add_parser("list", help="list the jobs", description="List the jobs."))
    for action, text in (
        ("get", "show a job"),
        ("run", "start a run now"),
        ("status", "a job's status: next fires, recent runs"),
        ("toggle", "enable or disable a job"),
        ("runs", "a job's runs, newest first"),
    ):
        sub = _client_options(job_commands.add_parser(action, help=text, description=text[0].upper() + text[1:] + "."))
        sub.add_argument("job", help="the job's id or name")
    toggle = job_commands.choices["toggle"]
    toggle.add_argument("--enabled", choices=["true", "false"], help="set rather than flip")
    job_commands.choices["runs"].add_argument("--limit", type=int, default=20, help="how many runs (default 20)")
    create_job = _client_options(
        job_commands.add_parser(
            "create",
            help="create a job from a file",
            description="Create a job from a YAML or JSON file: the API's body, where `source` and `destination` may "
            "name a data source and destination instead of dataSourceId / destinationDatabaseId.",
        )
    )
    create_job.add_argument("-f", "--file", required=True, help="the job's YAML or JSON")

    applying = _client_options(
        commands.add_parser(
            "apply",
            help="make sources, destinations and jobs match a file",
            description="Declare sources, destinations and jobs by name in a YAML file (${VAR} is read from the "
            "environment); prints the plan, then creates or replaces what differs. A second apply changes nothing.",
        )
    )
    applying.add_argument("-f", "--file", required=True, help="e.g. examples/jobs.yaml")
    applying.add_argument("--dry-run", action="store_true", help="print the plan only")

    demo_parser = _client_options(
        commands.add_parser(
            "demo",
            help="seed a demo database on up's server and sync it every minute",
            description="Seed demo_shop on SYNCJOBS_MONGODB_URI, declare a source, a destination and an every-minute "
            "incremental job, run it once and print where to look. Safe to run again.",
        )
    )
    demo_parser.epilog = f"Reads {CLIENT_ENVIRONMENT}, SYNCJOBS_MONGODB_URI (the database `syncjobs up` prints)."


def _print(args: argparse.Namespace, answer: Any, columns: list[str] | None = None) -> None:
    import yaml

    if args.json:
        print(json.dumps(answer, indent=2))
    elif columns is not None:
        rows = answer if isinstance(answer, list) else [answer]
        print(table([{**row, "schedule": _schedule(row.get("schedule"))} for row in rows], columns))
    else:
        print(yaml.safe_dump(answer, sort_keys=False).rstrip())


def _schedule(schedule: Any) -> Any:
    return f"{schedule['cron']} ({schedule.get('timezone', 'UTC')})" if isinstance(schedule, dict) else schedule


def _token(args: argparse.Namespace, client: ApiClient) -> None:
    if args.action == "create":
        answer = client.call("POST", client.ws("/tokens"), {"name": args.name, "scope": args.scope})
        print(json.dumps(answer, indent=2) if args.json else answer["token"])
    elif args.action == "list":
        _print(args, list(client.items(client.ws("/tokens"))), TOKEN_COLUMNS)
    else:
        client.call("DELETE", client.ws(f"/tokens/{args.id}"))
        print(f"revoked {args.id}")


def _job_file(client: ApiClient, path: str) -> dict[str, Any]:
    import yaml

    from syncjobs import apply

    try:
        job = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ClientError(f"{path}: {exc}") from None
    if not isinstance(job, dict) or not job.get("name"):
        raise ClientError(f"{path}: expected a mapping with a name")
    ids = {
        kind: {item["name"]: item["id"] for item in client.items(client.ws(f"/{collection}"))}
        for kind, collection, _ in apply.KINDS[:2]
    }
    return apply.job_body(job, ids)


def _jobs(args: argparse.Namespace, client: ApiClient) -> None:
    if args.action == "list":
        _print(args, list(client.items(client.ws("/sync-jobs"))), JOB_COLUMNS)
        return
    if args.action == "create":
        _print(args, client.call("POST", client.ws("/sync-jobs"), _job_file(client, args.file)), JOB_COLUMNS)
        return
    job = client.find("sync-jobs", args.job)
    path = client.ws(f"/sync-jobs/{job['id']}")
    if args.action == "get":
        _print(args, job)
    elif args.action == "run":
        _print(args, client.call("POST", path + "/run"), ["runId", "status"])
    elif args.action == "status":
        _print(args, client.call("GET", path + "/status"))
    elif args.action == "toggle":
        body = None if args.enabled is None else {"enabled": args.enabled == "true"}
        _print(args, client.call("POST", path + "/toggle", body), JOB_COLUMNS)
    else:
        runs = list(client.items(path + f"/runs?limit={min(args.limit, 100)}", cursor="before", limit=args.limit))
        _print(args, runs, RUN_COLUMNS)


def _apply(args: argparse.Namespace, client: ApiClient) -> None:
    from syncjobs import apply

    changes = apply.plan(client, apply.load(args.file))
    for change in changes:
        print(change.line())
    pending = [change for change in changes if change.action != "unchanged"]
    if not pending:
        print("no changes")
    elif args.dry_run:
        print(f"{len(pending)} to change (dry run: nothing applied)")
    else:
        apply.execute(client, changes)
        print(f"applied {len(pending)} change" + ("" if len(pending) == 1 else "s"))


def _demo(args: argparse.Namespace, client: ApiClient) -> int:
    from syncjobs import demo

    uri = os.environ.get("SYNCJOBS_MONGODB_URI")
    if not uri:
        raise ClientError("no database: set SYNCJOBS_MONGODB_URI (the database `syncjobs up` prints)")
    from pymongo.errors import PyMongoError

    try:
        return demo.run_demo(client, uri, sys.stdout)
    except PyMongoError as exc:
        raise ClientError(f"the database at SYNCJOBS_MONGODB_URI: {str(exc)[:300]}") from None


HANDLERS: dict[str, Callable[[argparse.Namespace, ApiClient], int | None]] = {
    "token": _token,
    "jobs": _jobs,
    "apply": _apply,
    "demo": _demo,
}


def run_client_command(args: argparse.Namespace) -> int:
    """0 on success; a user's mistake or an error answer is one line on stderr and exit 1."""
    try:
        client = ApiClient.from_options(args.api, args.token, args.workspace)
        return HANDLERS[args.command](args, client) or 0
    except ClientError as exc:
        print(f"syncjobs {args.command}: {exc}", file=sys.stderr)
        return 1
