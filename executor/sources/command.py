"""A program speaking the Singer protocol (SCHEMA / RECORD / STATE on stdout) as a data source.

The tap is called as Singer taps expect: `--config FILE`, `--state FILE` (the saved cursor), `--catalog
FILE` when the source config has one, `--discover` to list streams. Each entity is read by its own run
of the tap, whose other streams are ignored; each entity keeps its own STATE, so the streams' cursors
never overwrite each other. STATE covers every RECORD before it, so a batch carries a cursor only when
a STATE closes it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
from collections import deque
from collections.abc import AsyncGenerator, Mapping
from pathlib import Path
from typing import Any

from syncjobs.executor.egress_proxy import EgressProxy
from syncjobs.executor.sources import Batch, Record, SourceError
from syncjobs.shared.egress import EgressPolicy
from syncjobs.shared.process import die_with_this_process
from syncjobs.shared.tap_isolation import (
    NAMESPACE_ISOLATIONS,
    TAP_USER_VARIABLE,
    drop_to,
    fenced_argv,
    isolation,
    tap_env,
    tap_user,
)

STDERR_TAIL_LINES = 20
LINE_LIMIT = 64 * 1024 * 1024


class CommandSource:
    """Runs `config.command` (an argv list) with `config.config` as the tap's config file."""

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        batch_size: int,
        egress: EgressPolicy | None = None,
        control: frozenset[tuple[str, int]] = frozenset(),
    ) -> None:
        command = config.get("command")
        if not isinstance(command, list) or not command or not all(isinstance(a, str) for a in command):
            raise SourceError("command source config needs `command`: a non-empty list of strings")
        self._argv = list(command)
        self._tap_config = dict(config.get("config") or {})
        self._catalog = config.get("catalog")
        self._streams = config.get("streams")
        self._batch_size = batch_size
        self._workdir = tempfile.TemporaryDirectory(prefix="syncjobs-tap-")
        self._user = tap_user()
        if self._user is not None:
            os.chown(self._workdir.name, self._user.uid, self._user.gid)
        self._proxy = EgressProxy(egress or EgressPolicy(), control)
        self._proxy_url: str | None = None  # where the tap finds the proxy; None until started

    async def _fence(self, argv: list[str]) -> tuple[list[str], dict[str, str], Any]:
        """The tap's argv, environment and preexec: in a network namespace whose only way out is the egress
        proxy where the kernel allows one, else with the proxy in its environment (`shared/tap_isolation`)."""
        workdir = self._workdir.name
        namespaced = isolation() in NAMESPACE_ISOLATIONS
        if self._proxy_url is None:
            if namespaced:
                self._proxy_url = str(Path(workdir) / "proxy.sock")
                await self._proxy.start_unix(self._proxy_url)
            else:
                self._proxy_url = f"http://127.0.0.1:{await self._proxy.start_tcp()}"
        if namespaced:
            user = os.environ.get(TAP_USER_VARIABLE) or None
            env = {k: v for k, v in tap_env(workdir, "").items() if not k.lower().endswith("_proxy")}
            return fenced_argv(argv, self._proxy_url, user), env, die_with_this_process()
        return argv, tap_env(workdir, self._proxy_url), drop_to(self._user, die_with_this_process())

    def _write(self, name: str, content: Any) -> str:
        path = Path(self._workdir.name) / name
        path.write_text(json.dumps(content, default=str))
        if self._user is not None:
            os.chown(path, self._user.uid, self._user.gid)
        return str(path)

    async def _start(self, extra: list[str]) -> asyncio.subprocess.Process:
        # The tap is someone else's code: a minimal environment, the network only through the egress proxy.
        tap = [*self._argv, "--config", self._write("config.json", self._tap_config), *extra]
        argv, env, preexec = await self._fence(tap)
        try:
            return await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                limit=LINE_LIMIT,
                preexec_fn=preexec,  # a SIGKILLed executor leaves no tap running
            )
        except OSError as exc:
            raise SourceError(f"cannot start tap {self._argv[0]!r}: {exc.strerror}") from None

    async def list_entities(self) -> list[str]:
        if isinstance(self._streams, list):
            return [str(s) for s in self._streams]
        proc = await self._start(["--discover"])
        out, err = await proc.communicate()
        if proc.returncode != 0:
            tail = _tail(err.decode(errors="replace"))
            raise SourceError(f"tap --discover exited with {proc.returncode}{self._refusals()}: {tail}")
        try:
            catalog = json.loads(out)
            return [str(s.get("tap_stream_id") or s["stream"]) for s in catalog["streams"]]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise SourceError("tap --discover did not print a Singer catalog") from None

    async def read(self, entity: str, *, incremental: bool, cursor: Any | None) -> AsyncGenerator[Batch, None]:
        extra: list[str] = []
        if self._catalog is not None:
            extra += ["--catalog", self._write("catalog.json", self._catalog)]
        if incremental and cursor is not None:
            extra += ["--state", self._write("state.json", cursor)]
        proc = await self._start(extra)
        assert proc.stdout is not None and proc.stderr is not None
        stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        drain = asyncio.create_task(_drain(proc.stderr, stderr_tail), name=f"tap {proc.pid} stderr")
        key_properties: list[str] = []
        pending: list[Record] = []
        try:
            async for line in proc.stdout:
                if not line.strip():
                    continue
                message = _parse(line)
                kind = message.get("type")
                if kind == "STATE":
                    if incremental:
                        yield Batch(pending, message.get("value"))
                        pending = []
                    continue
                if message.get("stream") != entity:
                    continue
                if kind == "SCHEMA":
                    key_properties = list(message.get("key_properties") or [])
                elif kind == "RECORD":
                    pending.append(_with_id(message.get("record"), key_properties, entity))
                    if len(pending) >= self._batch_size:
                        yield Batch(pending)
                        pending = []
            returncode = await proc.wait()
            await drain
            if returncode != 0:
                refused = (
                    f" (the egress proxy refused: {'; '.join(self._proxy.refused[-3:])})" if self._proxy.refused else ""
                )
                raise SourceError(f"tap exited with {returncode}{refused}: {_tail(''.join(stderr_tail))}")
            if pending:
                yield Batch(pending)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            drain.cancel()

    def _refusals(self) -> str:
        """What the egress proxy refused the tap, for the run's error."""
        tried = "; ".join(self._proxy.refused[-3:])
        return f" (the egress proxy refused: {tried})" if tried else ""

    async def close(self) -> None:
        await self._proxy.close()
        self._workdir.cleanup()


def _parse(line: bytes) -> dict[str, Any]:
    try:
        message = json.loads(line)
    except ValueError:
        raise SourceError(f"tap printed a line that is not a Singer message: {line[:200]!r}") from None
    if not isinstance(message, dict):
        raise SourceError("tap printed a JSON value that is not a Singer message")
    return message


def _with_id(record: Any, key_properties: list[str], entity: str) -> Record:
    """The record with `_id` from its stream's key properties (a composite key is a sub-document)."""
    if not isinstance(record, dict):
        raise SourceError(f"{entity}: a RECORD has no record object")
    try:
        if len(key_properties) == 1:
            doc_id: Any = record[key_properties[0]]
        elif key_properties:
            doc_id = {key: record[key] for key in key_properties}
        else:
            # Without a key a record is its content: an edit reads as a delete plus an insert.
            content = json.dumps(record, sort_keys=True, default=str).encode()
            doc_id = hashlib.blake2b(content, digest_size=16).hexdigest()
    except KeyError as missing:
        raise SourceError(f"{entity}: a RECORD lacks its key property {missing.args[0]!r}") from None
    return {"_id": doc_id, **record}


async def _drain(stream: asyncio.StreamReader, tail: deque[str]) -> None:
    async for line in stream:
        tail.append(line.decode(errors="replace"))


def _tail(text: str) -> str:
    return text.strip()[-2000:] or "(no stderr)"
