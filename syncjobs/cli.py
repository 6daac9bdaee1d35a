"""The `syncjobs` command: one entry point, a subcommand per process."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from importlib.metadata import version

from syncjobs.commands import add_client_commands, run_client_command
from syncjobs.shared.process import make_non_dumpable
from syncjobs.shared.settings import Settings, SettingsError

DATABASE_ENV = "SYNCJOBS_MONGODB_URI, SYNCJOBS_DATABASE, SYNCJOBS_SECRET_KEYS, SYNCJOBS_LOG_LEVEL"
EGRESS_ENV = "SYNCJOBS_ALLOWED_NETWORKS, SYNCJOBS_CONTROL_CLUSTER_DATABASES, SYNCJOBS_TAPS"
API_ENV = (
    "SYNCJOBS_API_HOST, SYNCJOBS_API_PORT, SYNCJOBS_ADMIN_TOKEN, SYNCJOBS_RUN_RETENTION_DAYS, SYNCJOBS_ALERT_*, "
    "SYNCJOBS_ALLOW_ARBITERS"
)
WORKER_ENV = (
    "SYNCJOBS_WORKER_ID, SYNCJOBS_LEASE_TTL_SECONDS, SYNCJOBS_RUN_LEASE_SECONDS, SYNCJOBS_POLL_SECONDS, "
    "SYNCJOBS_MAX_CONCURRENT_RUNS, SYNCJOBS_ALLOW_ARBITERS, "
    "SYNCJOBS_MAX_RUNS_PER_WORKSPACE, SYNCJOBS_SHUTDOWN_GRACE_SECONDS, SYNCJOBS_EXECUTOR_COMMAND, "
    "SYNCJOBS_WARM_EXECUTOR, SYNCJOBS_WORKER_METRICS_PORT, SYNCJOBS_ALERT_SWEEP_SECONDS, SYNCJOBS_ALERT_*, "
    "SYNCJOBS_WORKSPACE_SHARE, SYNCJOBS_EXECUTOR_MEMORY_MB, SYNCJOBS_TAP_USER"
)


def _reads(*groups: str) -> str:
    names = dict.fromkeys(name for group in groups for name in group.split(", "))  # each once, in order
    return "Reads " + ", ".join(names) + "."


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="syncjobs", description="A MongoDB-backed scheduler for data-sync jobs.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('syncjobs')}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser(
        "up",
        help="run api + worker (+ an embedded database unless SYNCJOBS_MONGODB_URI is set)",
        description="Run the whole stack in the foreground. Without SYNCJOBS_MONGODB_URI an embedded "
        "SecantusDB keeps its data in --data-dir. Ctrl-C stops everything.",
        epilog=_reads(DATABASE_ENV, EGRESS_ENV, API_ENV, WORKER_ENV),
    )
    up.add_argument("--data-dir", default="./syncjobs-data", help="where the embedded database keeps its data")
    up.add_argument("--port", type=int, default=None, help="API port (default: SYNCJOBS_API_PORT or 8080)")
    up.add_argument("--demo", action="store_true", help="once up, run `syncjobs demo` against it")
    up.add_argument(
        "--db-port",
        type=int,
        default=None,
        help="the embedded database's port (default: the one chosen at first start, kept in --data-dir)",
    )

    commands.add_parser(
        "api",
        help="run the REST API",
        description="Serve the REST API.",
        epilog=_reads(DATABASE_ENV, EGRESS_ENV, API_ENV),
    )
    commands.add_parser(
        "worker",
        help="run a scheduler worker replica",
        description="Run one worker replica; the one holding the lease schedules.",
        epilog=_reads(DATABASE_ENV, EGRESS_ENV, WORKER_ENV),
    )

    execute = commands.add_parser(
        "exec",
        help="run one sync run (what the worker spawns)",
        description="Execute one run: read the source, write the destination.",
        epilog=_reads(DATABASE_ENV, EGRESS_ENV) + " The executor it starts gets none of the control settings.",
    )
    execute.add_argument("--run-id", required=True, help="the job_runs id to execute")
    execute.add_argument("--dry-run", action="store_true", help="report what would change, write nothing")
    execute.add_argument("--batch-size", type=int, default=None, help="records per bulk write")
    execute.add_argument(
        "--data-dir",
        help="the data dir of `syncjobs up`: its database, secret key and network defaults, as up gives its worker",
    )

    add_client_commands(commands)

    secrets = commands.add_parser(
        "secrets", help="manage the encryption of stored secrets", description="Manage stored secrets."
    )
    secrets_commands = secrets.add_subparsers(dest="secrets_command", required=True, metavar="ACTION")
    secrets_commands.add_parser(
        "rotate",
        help="re-encrypt every stored secret under the first key of SYNCJOBS_SECRET_KEYS",
        description="Re-encrypt every secret of data sources, destinations and webhooks under the first key "
        "of SYNCJOBS_SECRET_KEYS (all listed keys decrypt). Clear legacy secrets get encrypted.",
        epilog=_reads(DATABASE_ENV),
    )
    return parser


async def _rotate_secrets(settings: Settings) -> dict[str, int]:
    from syncjobs.shared.mongo import connect
    from syncjobs.shared.store.secret_rotation import rotate_secrets

    client = connect(settings.require_mongodb_uri())
    try:
        return await rotate_secrets(client[settings.database])
    finally:
        await client.close()


async def _create_admin_token(settings: Settings, name: str, *, rotate: bool = False) -> str:
    """An admin token straight in the database (the API makes workspace tokens only); with `rotate`, every
    other admin token is revoked."""
    from syncjobs.shared.mongo import connect, ensure_indexes
    from syncjobs.shared.store import api_tokens

    client = connect(settings.require_mongodb_uri())
    try:
        db = client[settings.database]
        await ensure_indexes(db, settings.run_retention_days)
        if rotate:
            return await api_tokens.rotate_admin_tokens(db, name)
        return await api_tokens.create_token(db, None, name)
    finally:
        await client.close()


def _serve(command: str, settings: Settings) -> int:
    """Run the api or a worker; a replica set it refuses (arbiters) is a clear message and exit 2."""
    from syncjobs.shared.errors import ArbitersRefused

    try:
        if command == "api":
            from syncjobs.api.app import run as run_api

            run_api(settings)
        else:
            from syncjobs.worker.main import main as run_worker

            run_worker(settings)
    except ArbitersRefused as exc:
        print(f"syncjobs {command}: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Every syncjobs process (up, api, worker, exec's privileged side) may hold the secret keys, the admin
    # token or the control URI: none is readable by a tap running as the same user (its /proc/<pid>/mem,
    # and for a non-root user its environ). The executor and the fork server mark themselves likewise.
    make_non_dumpable()
    in_database = getattr(args, "admin", False) or getattr(args, "action", None) == "rotate-admin"
    if args.command in ("jobs", "apply", "demo") or (args.command == "token" and not in_database):
        return run_client_command(args)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"syncjobs: {exc}", file=sys.stderr)
        return 2
    from syncjobs.shared.logging import configure_logging

    if args.command == "exec":
        from syncjobs.executor.cli import main as exec_main

        if args.data_dir is not None:
            from syncjobs.up import StackError, environment_of

            try:
                os.environ.update(environment_of(args.data_dir, os.environ))
            except StackError as exc:
                print(f"syncjobs exec: {exc}", file=sys.stderr)
                return 2
        forwarded = ["--run-id", args.run_id, *(["--dry-run"] if args.dry_run else [])]
        if args.batch_size is not None:
            forwarded += ["--batch-size", str(args.batch_size)]
        return exec_main(forwarded)
    configure_logging(settings.log_level)
    if args.command in ("api", "worker", "secrets"):
        from syncjobs.shared.secrets import SecretKeyError, install_keys

        try:
            install_keys(settings.secret_keys)
        except SecretKeyError as exc:
            print(f"syncjobs {args.command}: {exc}", file=sys.stderr)
            return 2
    if args.command == "up":
        from syncjobs.up import run_stack

        return run_stack(settings, data_dir=args.data_dir, port=args.port, db_port=args.db_port, demo=args.demo)
    if args.command in ("api", "worker"):
        return _serve(args.command, settings)
    from pymongo.errors import PyMongoError

    from syncjobs.shared.errors import SyncjobsError
    from syncjobs.shared.secrets import SecretKeyError

    try:
        if args.command == "secrets":
            counts = asyncio.run(_rotate_secrets(settings))
            print(" ".join(f"{collection}={count}" for collection, count in counts.items()))
            return 0
        token = asyncio.run(_create_admin_token(settings, args.name, rotate=args.action == "rotate-admin"))
    except (SyncjobsError, SettingsError, PyMongoError, SecretKeyError) as exc:
        print(f"syncjobs: {exc}", file=sys.stderr)
        return 1
    print(token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
