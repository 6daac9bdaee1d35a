"""Inside a tap's network namespace: bring loopback up, serve 127.0.0.1:<port> as a tunnel to the executor's
egress proxy (a Unix socket, which a network namespace does not cut off), and run the tap with that port as
its proxy. The namespace has no other interface, so the proxy is the tap's only way out.

    python -m syncjobs.executor.tap_bridge PROXY_SOCKET [--user NAME] -- TAP_ARGV...
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import socket
import struct
import subprocess
import sys
import threading

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


def _pipe(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while chunk := source.recv(64 * 1024):
            target.sendall(chunk)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)


def _tunnel(client: socket.socket, proxy_socket: str) -> None:
    """One connection of the tap, carried to the executor's proxy; threads, not asyncio: the bridge starts
    once per tap run, and importing asyncio would cost more than the whole bridge does."""
    with client, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as upstream:
        try:
            upstream.connect(proxy_socket)
        except OSError:
            return
        back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
        back.start()
        _pipe(client, upstream)
        back.join()


def _serve(listener: socket.socket, proxy_socket: str) -> None:
    while True:
        client, _ = listener.accept()
        threading.Thread(target=_tunnel, args=(client, proxy_socket), daemon=True).start()


def bridge(proxy_socket: str, user: str | None, argv: list[str]) -> int:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    env = tap_env(os.environ.get("HOME", "/tmp"), f"http://127.0.0.1:{port}")
    identity = tap_user({"SYNCJOBS_TAP_USER": user} if user else {})
    # Started before any thread (a preexec function after threads may deadlock); connects wait in the backlog.
    tap = subprocess.Popen(argv, env=env, preexec_fn=drop_to(identity, die_with_this_process()))
    threading.Thread(target=_serve, args=(listener, proxy_socket), daemon=True).start()
    code = tap.wait()
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
    return bridge(args.proxy_socket, args.user, argv)


if __name__ == "__main__":
    raise SystemExit(main())
