"""How a tap is fenced in on this machine, decided once at start: which network isolation the kernel allows,
the tap's minimal environment, and the user it runs as.

A tap is someone else's code. It reaches the network only through the executor's egress-checking proxy
(`executor/egress_proxy.py`); where the kernel allows a network namespace (bubblewrap, or `unshare -n`
as root, or `unshare -rn` through a user namespace) the tap runs in one whose only way out is that proxy,
so a tap that dials an address directly fails. Without one (`proxy-only`) a tap that ignores the proxy
variables is not stopped: the README says so, and /healthz reports which isolation is in force.
"""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

TAP_USER_VARIABLE = "SYNCJOBS_TAP_USER"
NAMESPACE_ISOLATIONS = ("bwrap", "unshare", "unshare-user")
_PROBES = {
    "bwrap": ["bwrap", "--unshare-net", "--dev-bind", "/", "/", "--die-with-parent", "--", "true"],
    "unshare": ["unshare", "-n", "--", "true"],
    "unshare-user": ["unshare", "-rn", "--", "true"],
}
BRIDGE = [sys.executable, "-P", "-m", "syncjobs.executor.tap_bridge"]


@functools.cache
def isolation() -> str:
    """The strongest network isolation that works here: bwrap, unshare, unshare-user, or proxy-only."""
    for name, probe in _PROBES.items():
        if shutil.which(probe[0]) is None:
            continue
        try:
            if subprocess.run(probe, capture_output=True, timeout=10, check=False).returncode == 0:
                return name
        except (OSError, subprocess.SubprocessError):
            continue
    return "proxy-only"


def fenced_argv(argv: list[str], proxy_socket: str, user: str | None) -> list[str]:
    """`argv` run by the bridge inside a network namespace of its own (isolation permitting)."""
    kind = isolation()
    bridge = [*BRIDGE, proxy_socket, *(["--user", user] if user and kind != "unshare-user" else []), "--", *argv]
    if kind == "bwrap":
        return [*_PROBES["bwrap"][:-1], *bridge]
    return [*_PROBES[kind][:-1], *bridge]


def tap_env(workdir: str, proxy_url: str) -> dict[str, str]:
    """All a tap gets of the environment: a PATH, a locale, its own home, and the proxy."""
    env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "LANG": "C.UTF-8"}
    env |= {"HOME": workdir, "TMPDIR": workdir}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env[name] = env[name.lower()] = proxy_url
    return env


@dataclass(frozen=True)
class TapUser:
    uid: int
    gid: int


def tap_user(env: Mapping[str, str] | None = None) -> TapUser | None:
    """`SYNCJOBS_TAP_USER` (a name or uid) resolved; None when unset. An unknown user is an error at start."""
    name = (os.environ if env is None else env).get(TAP_USER_VARIABLE, "").strip()
    if not name:
        return None
    entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    return TapUser(entry.pw_uid, entry.pw_gid)


def drop_to(user: TapUser | None, then: Callable[[], None]) -> Callable[[], None]:
    """A preexec function: become `user` (groups, gid, uid; irreversibly), then `then`."""

    def become() -> None:
        if user is not None:
            os.setgroups([])
            os.setgid(user.gid)
            os.setuid(user.uid)
        then()

    return become
