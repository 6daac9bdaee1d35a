"""`syncjobs up`: the whole stack in one foreground command, on an embedded database by default."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from syncjobs.shared.embedded import EmbeddedServer, start_embedded
from syncjobs.shared.logging import get_logger
from syncjobs.shared.mongo import connect, ensure_indexes
from syncjobs.shared.secrets import new_key
from syncjobs.shared.settings import Settings
from syncjobs.shared.store import api_tokens, workspaces

log = get_logger(__name__)
ADMIN_TOKEN_FILE = "admin-token"
SECRET_KEY_FILE = "secret-key"
# The single-user embedded default may reach this machine's own services (the README's demo does).
UP_ALLOWED_NETWORKS = "127.0.0.0/8,::1/128"


@dataclass(frozen=True)
class StackInfo:
    api_url: str
    workspace_id: str
    admin_token: str


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


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the api exited with {process.returncode} before it was healthy")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the api did not answer on {url} within {timeout:.0f}s")


def _spawn(command: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    # A session of its own: Ctrl-C reaches only `up`, which stops the children in order.
    return subprocess.Popen([sys.executable, "-P", "-m", "syncjobs", command], env=env, start_new_session=True)


def _stop(process: subprocess.Popen[bytes], timeout: float) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_stack(settings: Settings, *, data_dir: str, port: int | None = None) -> int:
    """Start database (unless external), api and one worker; stop all of it on Ctrl-C or SIGTERM."""
    folder = Path(data_dir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    api_port = port or settings.api_port
    embedded: EmbeddedServer | None = None
    uri = settings.mongodb_uri
    if uri is None:
        embedded = start_embedded(folder / "db", log_file=folder / "secantusd.log")
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
        shown_host = "localhost" if settings.api_host in ("0.0.0.0", "::") else settings.api_host
        info = StackInfo(f"http://{shown_host}:{api_port}", workspace_id, token)
        _wait_healthy(f"http://127.0.0.1:{api_port}", api)
        print(
            f"syncjobs is up\n  API:          {info.api_url}/api\n  dashboard:    {info.api_url}/dashboard\n"
            f"  workspace id: {info.workspace_id}\n  admin token:  {info.admin_token}\n"
            f"  database:     {uri}\nPress Ctrl-C to stop.",
            flush=True,
        )
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
        while all(child.poll() is None for child in children):
            if signal.sigtimedwait(stop_signals, 0.5) is not None:
                return 0
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for child in reversed(children):  # the worker first: it releases its lease and finishes runs
            _stop(child, settings.shutdown_grace_seconds + 5)
        if embedded is not None:
            embedded.stop()
        log.info("stack_stopped")
