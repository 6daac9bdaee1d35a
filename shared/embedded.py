"""Launch SecantusDB as its own process (it is GPL-2.0: we run it, we never import it)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import PyMongoError
from syncjobs.shared.process import die_with_this_process


class EmbeddedUnavailable(RuntimeError):
    """SecantusDB is not installed: `pip install 'syncjobs[embedded]'`, or set SYNCJOBS_MONGODB_URI."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def embedded_uri(port: int) -> str:
    """How a client reaches an embedded server on this machine (the banner's and the README's URI)."""
    return f"mongodb://127.0.0.1:{port}/?directConnection=true"


def _server_command() -> list[str]:
    script = shutil.which("secantusd-py")
    if script is None:
        candidate = Path(sys.executable).with_name("secantusd-py")
        if not candidate.exists():
            raise EmbeddedUnavailable(EmbeddedUnavailable.__doc__ or "")
        script = str(candidate)
    return [script]


@dataclass
class EmbeddedServer:
    """A running SecantusDB subprocess; `uri` connects to it directly."""

    process: subprocess.Popen[bytes]
    port: int
    storage_path: str

    @property
    def uri(self) -> str:
        return embedded_uri(self.port)

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_embedded(
    storage_path: str | Path,
    port: int | None = None,
    *,
    log_file: Path | None = None,
    startup_timeout: float = 60.0,
    extra_args: Sequence[str] = (),
    die_with_parent: bool = False,
) -> EmbeddedServer:
    """Start `secantusd-py` and return once it answers a ping (or raise with its log tail).

    `die_with_parent`: the server gets SIGKILL when this process dies (`syncjobs up`'s own database).
    """
    port = port or free_port()
    storage = str(storage_path)
    if storage != ":memory:":
        Path(storage).mkdir(parents=True, exist_ok=True)
    log_path = log_file or (Path(storage) / "secantusd.log" if storage != ":memory:" else None)
    command = [
        *_server_command(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--storage-path",
        storage,
        "--log-level",
        "WARNING",
    ]
    command += extra_args  # e.g. a test server's `--enable-test-commands`, `--oplog-max-entries N`
    preexec_fn = die_with_this_process() if die_with_parent else None
    with open(log_path or os.devnull, "ab") as out:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=preexec_fn
        )
    server = EmbeddedServer(process=process, port=port, storage_path=storage)
    deadline = time.monotonic() + startup_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = Path(log_path).read_text(errors="replace")[-2000:] if log_path else ""
            raise EmbeddedUnavailable(f"secantusd-py exited with {process.returncode}: {tail}")
        try:
            client: MongoClient[dict[str, object]]
            with MongoClient(server.uri, serverSelectionTimeoutMS=500) as client:
                client.admin.command("ping")
            return server
        except PyMongoError:
            time.sleep(0.2)
    server.stop()
    raise EmbeddedUnavailable(f"secantusd-py did not answer on port {port} within {startup_timeout}s")
