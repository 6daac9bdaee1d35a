"""Inside a tap's network namespace: bring loopback up, serve 127.0.0.1:<port> as a tunnel to the executor's
egress proxy (a Unix socket, which a network namespace does not cut off), and run the tap with that port as
its proxy. The namespace has no other interface, so the proxy is the tap's only way out.

    python -m syncjobs.executor.tap_bridge PROXY_SOCKET [--user NAME] -- TAP_ARGV...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import os
import socket
import struct
import sys

from syncjobs.shared.process import die_with_this_process
from syncjobs.shared.tap_isolation import drop_to, tap_env, tap_user

SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
EXIT_BRIDGE_FAILED = 70


def loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock, SIOCGIFFLAGS, request)[:18])[1]
        if not flags & IFF_UP:
            fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | IFF_UP))


async def _tunnel(proxy_socket: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        up_reader, up_writer = await asyncio.open_unix_connection(proxy_socket)
    except OSError:
        writer.close()
        return
    await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while chunk := await reader.read(64 * 1024):
            writer.write(chunk)
            await writer.drain()
    with contextlib.suppress(Exception):
        writer.close()


async def bridge(proxy_socket: str, user: str | None, argv: list[str]) -> int:
    server = await asyncio.start_server(lambda r, w: _tunnel(proxy_socket, r, w), host="127.0.0.1", port=0)
    port = server.sockets[0].getsockname()[1]
    env = tap_env(os.environ.get("HOME", "/tmp"), f"http://127.0.0.1:{port}")
    identity = tap_user({"SYNCJOBS_TAP_USER": user} if user else {})
    process = await asyncio.create_subprocess_exec(
        *argv, env=env, preexec_fn=drop_to(identity, die_with_this_process())
    )
    code = await process.wait()
    server.close()
    return code if code >= 0 else 128 - code


def main() -> int:
    parser = argparse.ArgumentParser(prog="tap_bridge")
    parser.add_argument("proxy_socket")
    parser.add_argument("--user")
    parser.add_argument("argv", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    try:
        loopback_up()
    except OSError as exc:
        print(f"tap_bridge: cannot bring loopback up in the tap's namespace: {exc}", file=sys.stderr)
        return EXIT_BRIDGE_FAILED
    return asyncio.run(bridge(args.proxy_socket, args.user, argv))


if __name__ == "__main__":
    raise SystemExit(main())
