"""`syncjobs up`: the whole stack in one foreground command, on an embedded database by default."""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pymongo.errors import PyMongoError

from syncjobs.shared.embedded import EmbeddedServer, EmbeddedUnavailable, embedded_uri, free_port, start_embedded
from syncjobs.shared.logging import get_logger
from syncjobs.shared.mongo import connect, ensure_indexes
from syncjobs.shared.process import die_with_this_process
from syncjobs.shared.secrets import new_key
from syncjobs.shared.settings import Settings
from syncjobs.shared.store import api_tokens, workspaces

log = get_logger(__name__)
ADMIN_TOKEN_FILE = "admin-token"
SECRET_KEY_FILE = "secret-key"
DB_PORT_FILE = "db-port"  # the embedded server's port, chosen at first start: saved URIs stay valid
# The single-user embedded default may reach this machine's own services (the README's demo does).
UP_ALLOWED_NETWORKS = "127.0.0.0/8,::1/128"
STOP_MARGIN_SECONDS = 5.0  # on top of the worker's shutdown grace, for the api and the database


@dataclass(frozen=True)
class StackInfo:
    """What the banner shows: where the API answers (no /api suffix), the workspace, token and database."""

    api_url: str
    workspace_id: str
    admin_token: str
    database_uri: str

    def banner(self) -> str:
        exports = {
            "SYNCJOBS_API": self.api_url,
            "SYNCJOBS_TOKEN": self.admin_token,
            "SYNCJOBS_WORKSPACE": self.workspace_id,
            "SYNCJOBS_MONGODB_URI": self.database_uri,
        }
        export = "export " + " ".join(f"{name}={shlex.quote(value)}" for name, value in exports.items())
        return (
            f"syncjobs is up\n  API:          {self.api_url}\n  dashboard:    {self.api_url}/dashboard\n"
            f"  workspace id: {self.workspace_id}\n  admin token:  {self.admin_token}\n"
            f"  database:     {self.database_uri}\n"
            f"Paste in another shell for the CLI and the README's examples:\n  {export}\n"
            "Press Ctrl-C to stop."
        )


def _run_demo(info: StackInfo) -> None:
    """`up --demo`: the demo against this stack, printed below the banner; a failure leaves the stack up."""
    from syncjobs.client import ApiClient, ClientError
    from syncjobs.demo import run_demo

    client = ApiClient(info.api_url, info.admin_token, info.workspace_id)
    try:
        run_demo(client, info.database_uri, sys.stdout)
    except (ClientError, PyMongoError) as exc:
        print(f"demo: failed: {exc}", flush=True)


class StackError(Exception):
    """A data dir that is not one `syncjobs up` made."""


def environment_of(data_dir: str, env: Mapping[str, str]) -> dict[str, str]:
    """What `syncjobs exec --data-dir` takes of an `up` data dir: the embedded database's URI and the secret key
    (these win: they are what up gave its worker), and up's network defaults where `env` sets none."""
    folder = Path(data_dir)
    key_file = folder / SECRET_KEY_FILE
    port = _saved_db_port(folder) if folder.is_dir() else None
    if not key_file.exists():
        raise StackError(f"{folder} is not a data dir of `syncjobs up` (it has no {SECRET_KEY_FILE})")
    found = {"SYNCJOBS_SECRET_KEYS": key_file.read_text().strip()}
    if port is not None:
        found["SYNCJOBS_MONGODB_URI"] = embedded_uri(port)
    defaults = {"SYNCJOBS_ALLOWED_NETWORKS": UP_ALLOWED_NETWORKS, "SYNCJOBS_CONTROL_CLUSTER_DATABASES": "*"}
    return found | {name: value for name, value in defaults.items() if not env.get(name)}


class PortTaken(Exception):
    """A port `up` needs is in use: refused before anything starts."""


def _refuse_taken(host: str, port: int, what: str, flag: str) -> None:
    """Bind `port` the way the server will (address reuse, as aiohttp and asyncio do) and let go."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            raise PortTaken(
                f"the {what} port {port} is taken; stop what uses it or choose another with {flag}"
            ) from None


def _saved_db_port(data_dir: Path) -> int | None:
    path = data_dir / DB_PORT_FILE
    return int(path.read_text().strip()) if path.exists() else None


def _db_port(data_dir: Path, requested: int | None) -> int:
    """--db-port, else the port kept from the first start, else a free one; kept for the next start."""
    saved = _saved_db_port(data_dir)
    port = requested or saved or free_port()
    _refuse_taken("127.0.0.1", port, "database", "--db-port")
    if saved is not None and port != saved:
        # Sources and destinations saved with the old URI no longer reach this server.
        log.warning("embedded_database_moved", old_port=saved, new_port=port, uri=embedded_uri(port))
    (data_dir / DB_PORT_FILE).write_text(f"{port}\n")
    return port


def _admin_token(settings: Settings, data_dir: Path) -> str:
    """SYNCJOBS_ADMIN_TOKEN when set; else one made on first start and kept (0600) in the data folder."""
    if settings.admin_token:
        return settings.admin_token
    path = data_dir / ADMIN_TOKEN_FILE
    if path.exists():
        return path.read_text().strip()
    token = api_tokens.new_token_value()
    path.write_text(token + "\n")
    path.chmod(0o600)
    return token


def _secret_keys(settings: Settings, data_dir: Path) -> str:
    """SYNCJOBS_SECRET_KEYS when set; else a key made on first start and kept (0600) in the data folder."""
    if settings.secret_keys:
        return ",".join(settings.secret_keys)
    path = data_dir / SECRET_KEY_FILE
    if path.exists():
        return path.read_text().strip()
    path.touch(mode=0o600)  # never readable by others, not even for a moment
    path.chmod(0o600)
    path.write_text(new_key() + "\n")
    return path.read_text().strip()


async def _prepare_database(settings: Settings, uri: str, token: str) -> str:
    """Indexes, the `default` workspace and the admin token; returns the workspace id."""
    client = connect(uri)
    try:
        db = client[settings.database]
        await ensure_indexes(db, settings.run_retention_days)
        workspace, created = await workspaces.ensure_workspace(db, "default")
        if created:
            log.info("workspace_created", workspace_id=workspace.id, name=workspace.name)
        await api_tokens.store_token(db, token, None, "admin")
        return workspace.id
    finally:
        await client.close()


class ApiDidNotStart(Exception):
    """The api exited or never answered: `up` stops what it started and says so in one line."""


class _StopRequested(Exception):
    """Ctrl-C or SIGTERM before the stack was up."""


def _wait_healthy(
    url: str, process: subprocess.Popen[bytes], signals: set[signal.Signals], timeout: float = 60.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ApiDidNotStart(f"the api exited with {process.returncode} before it was healthy")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            if signal.sigtimedwait(signals, 0.2) is not None:
                raise _StopRequested from None
    raise ApiDidNotStart(f"the api did not answer on {url} within {timeout:.0f}s")


def _spawn(command: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A session of its own: Ctrl-C reaches only `up`, which stops the children in order. The child gets
    SIGKILL if `up` dies (SIGKILL, OOM kill): nothing of the stack outlives it. Called from the main thread
    (the death signal follows the thread that forked)."""
    return subprocess.Popen(
        [sys.executable, "-P", "-m", "syncjobs", command],
        env=env,
        start_new_session=True,
        preexec_fn=die_with_this_process(),
    )


def _wait_or_signalled(process: subprocess.Popen[bytes], deadline: float, signals: set[signal.Signals]) -> bool:
    """Wait for `process` until `deadline`; False early when another stop signal arrives (stop now)."""
    while process.poll() is None:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        if signal.sigtimedwait(signals, min(left, 0.1)) is not None:
            log.warning("stop_signal_repeated", action="killing the stack")
            return False
    return True


def stop_children(children: list[subprocess.Popen[bytes]], budget_seconds: float, signals: set[signal.Signals]) -> None:
    """SIGTERM each child in turn (the worker first: it releases its lease and finishes runs), all within
    `budget_seconds`; whatever is left then, or after a second Ctrl-C / SIGTERM, is SIGKILLed."""
    deadline = time.monotonic() + budget_seconds
    patient = True
    for child in reversed(children):
        if patient and child.poll() is None:
            child.send_signal(signal.SIGTERM)
            patient = _wait_or_signalled(child, deadline, signals)
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait()


def _embeds(settings: Settings, data_dir: Path) -> bool:
    """No SYNCJOBS_MONGODB_URI, or the URI of this data dir's own server (the banner's export line pasted in
    the shell that starts `up` again): the embedded server."""
    saved = _saved_db_port(data_dir)
    return settings.mongodb_uri is None or (saved is not None and settings.mongodb_uri == embedded_uri(saved))


def run_stack(
    settings: Settings, *, data_dir: str, port: int | None = None, db_port: int | None = None, demo: bool = False
) -> int:
    """Start database (unless external), api and one worker; stop all of it on Ctrl-C or SIGTERM.
    A taken port is refused (exit 2) before anything starts."""
    folder = Path(data_dir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    api_port = port or settings.api_port
    embeds = _embeds(settings, folder)
    try:
        _refuse_taken(settings.api_host, api_port, "API", "--port")
        chosen_db_port = _db_port(folder, db_port) if embeds else None
    except PortTaken as exc:
        print(f"syncjobs up: {exc}", file=sys.stderr)
        return 2
    embedded: EmbeddedServer | None = None
    if chosen_db_port is None:
        uri = settings.require_mongodb_uri()
    else:
        try:
            embedded = start_embedded(
                folder / "db", chosen_db_port, log_file=folder / "secantusd.log", die_with_parent=True
            )
        except EmbeddedUnavailable as exc:
            print(f"syncjobs up: the embedded database did not start: {exc}", file=sys.stderr)
            return 1
        uri = embedded.uri
        log.info("embedded_database_started", uri=uri, storage=str(folder / "db"))
    token = _admin_token(settings, folder)
    children: list[subprocess.Popen[bytes]] = []
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    try:
        workspace_id = asyncio.run(_prepare_database(settings, uri, token))
        env = {
            **os.environ,
            "SYNCJOBS_MONGODB_URI": uri,
            "SYNCJOBS_DATABASE": settings.database,
            "SYNCJOBS_ADMIN_TOKEN": token,
            "SYNCJOBS_API_PORT": str(api_port),
            "SYNCJOBS_SECRET_KEYS": _secret_keys(settings, folder),
            "SYNCJOBS_ALLOWED_NETWORKS": ",".join(settings.allowed_networks) or UP_ALLOWED_NETWORKS,
            # Its own server is often the only database a new user has: other databases on it are allowed,
            # the control database (and admin, local, config) never are.
            "SYNCJOBS_CONTROL_CLUSTER_DATABASES": ",".join(settings.control_cluster_databases) or "*",
        }
        api = _spawn("api", env)
        children.append(api)
        children.append(_spawn("worker", env))
        # Children start with the default mask; from here on a stop signal is read, not raised.
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
        shown_host = "localhost" if settings.api_host in ("0.0.0.0", "::") else settings.api_host
        info = StackInfo(f"http://{shown_host}:{api_port}", workspace_id, token, uri)
        _wait_healthy(f"http://127.0.0.1:{api_port}", api, stop_signals)
        print(info.banner(), flush=True)
        if demo:
            _run_demo(info)
        while all(child.poll() is None for child in children):
            if signal.sigtimedwait(stop_signals, 0.5) is not None:
                return 0
        return 1
    except (KeyboardInterrupt, _StopRequested):
        return 0
    except ApiDidNotStart as exc:
        print(f"syncjobs up: {exc}", file=sys.stderr)
        return 1
    finally:
        stop_children(children, settings.shutdown_grace_seconds + STOP_MARGIN_SECONDS, stop_signals)
        if embedded is not None:
            embedded.stop(timeout=STOP_MARGIN_SECONDS)
        log.info("stack_stopped")
