"""The `syncjobs` command: one entry point, a subcommand per process."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from syncjobs.shared.settings import Settings, SettingsError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="syncjobs", description="A MongoDB-backed scheduler for data-sync jobs.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser(
        "up",
        help="run api + worker (+ an embedded database unless SYNCJOBS_MONGODB_URI is set)",
        description="Run the whole stack in the foreground. Without SYNCJOBS_MONGODB_URI an embedded "
        "SecantusDB keeps its data in --data-dir. Ctrl-C stops everything.",
    )
    up.add_argument("--data-dir", default="./syncjobs-data", help="where the embedded database keeps its data")
    up.add_argument("--port", type=int, default=None, help="API port (default: SYNCJOBS_API_PORT or 8080)")

    commands.add_parser("api", help="run the REST API", description="Serve the REST API (SYNCJOBS_API_*).")
    commands.add_parser(
        "worker",
        help="run a scheduler worker replica",
        description="Run one worker replica; the one holding the lease schedules.",
    )

    execute = commands.add_parser(
        "exec",
        help="run one sync run (what the worker spawns)",
        description="Execute one run: read the source, write the destination.",
    )
    execute.add_argument("--run-id", required=True, help="the job_runs id to execute")
    execute.add_argument("--dry-run", action="store_true", help="report what would change, write nothing")
    execute.add_argument("--batch-size", type=int, default=None, help="records per bulk write")

    token = commands.add_parser("token", help="manage API tokens", description="Manage API tokens.")
    token_commands = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = token_commands.add_parser(
        "create",
        help="create a token and print it once",
        description="Create an API token; it is printed once, stored hashed.",
    )
    scope = create.add_mutually_exclusive_group(required=True)
    scope.add_argument("--workspace", help="the workspace id the token may act in")
    scope.add_argument("--admin", action="store_true", help="a token that may act in every workspace")
    create.add_argument("--name", default="cli", help="a label for the token")
    rotate = token_commands.add_parser(
        "rotate-admin",
        help="replace every admin token by one new one and print it once",
        description="Create an admin token and revoke every other (SYNCJOBS_ADMIN_TOKEN's included); "
        "an api started again with a revoked SYNCJOBS_ADMIN_TOKEN does not bring it back.",
    )
    rotate.add_argument("--name", default="admin (rotated)", help="a label for the new token")

    secrets = commands.add_parser(
        "secrets", help="manage the encryption of stored secrets", description="Manage stored secrets."
    )
    secrets_commands = secrets.add_subparsers(dest="secrets_command", required=True, metavar="ACTION")
    secrets_commands.add_parser(
        "rotate",
        help="re-encrypt every stored secret under the first key of SYNCJOBS_SECRET_KEYS",
        description="Re-encrypt every secret of data sources, destinations and webhooks under the first key "
        "of SYNCJOBS_SECRET_KEYS (all listed keys decrypt). Clear legacy secrets get encrypted.",
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


async def _create_token(settings: Settings, workspace: str | None, name: str, *, rotate_admin: bool = False) -> str:
    from syncjobs.shared.errors import NotFound
    from syncjobs.shared.models import parse_object_id
    from syncjobs.shared.mongo import connect, ensure_indexes
    from syncjobs.shared.store import api_tokens, workspaces

    client = connect(settings.require_mongodb_uri())
    try:
        db = client[settings.database]
        await ensure_indexes(db, settings.run_retention_days)
        if rotate_admin:
            return await api_tokens.rotate_admin_tokens(db, name)
        workspace_id = None
        if workspace is not None:
            workspace_id = parse_object_id(workspace)
            if workspace_id is None:
                raise NotFound(f"workspace {workspace} not found")
            await workspaces.get_workspace(db, workspace_id)
        return await api_tokens.create_token(db, workspace_id, name)
    finally:
        await client.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"syncjobs: {exc}", file=sys.stderr)
        return 2
    from syncjobs.shared.logging import configure_logging

    if args.command == "exec":
        from syncjobs.executor.cli import main as exec_main

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

        return run_stack(settings, data_dir=args.data_dir, port=args.port)
    if args.command == "api":
        from syncjobs.api.app import run as run_api

        run_api(settings)
        return 0
    if args.command == "worker":
        from syncjobs.worker.main import main as run_worker

        run_worker(settings)
        return 0
    from pymongo.errors import PyMongoError

    from syncjobs.shared.errors import SyncjobsError
    from syncjobs.shared.secrets import SecretKeyError

    try:
        if args.command == "secrets":
            counts = asyncio.run(_rotate_secrets(settings))
            print(" ".join(f"{collection}={count}" for collection, count in counts.items()))
            return 0
        rotate_admin = args.token_command == "rotate-admin"
        workspace = None if rotate_admin else args.workspace
        token = asyncio.run(_create_token(settings, workspace, args.name, rotate_admin=rotate_admin))
    except (SyncjobsError, SettingsError, PyMongoError, SecretKeyError) as exc:
        print(f"syncjobs: {exc}", file=sys.stderr)
        return 1
    print(token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
