"""A tenant's MongoDB URI, parsed and rebuilt from an allowlist: the driver only ever sees what we rebuilt.

Driver options reach far (an `authMechanism` of MONGODB-OIDC or MONGODB-AWS sends the worker's own cloud
credentials, `*File` options read the worker's files, `timeoutMS` changes how our checks behave), so a tenant
gives hosts, a database, SCRAM or X.509 credentials, `authSource`, `tls`, `replicaSet`, `readPreference`,
`appName` (and `directConnection`, which only narrows discovery), nothing else; a CA (and an X.509 client
certificate) come as PEM text in the config, never as a path. Every other option is refused naming it.
Timeouts are the scheduler's. The api checks this when a source or destination is written (a 422), the
executor again when it builds the run's clients.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlencode

from syncjobs.shared.errors import ValidationFailed

SCHEMES = ("mongodb://", "mongodb+srv://")
AUTH_MECHANISMS = frozenset({"SCRAM-SHA-1", "SCRAM-SHA-256", "MONGODB-X509"})
READ_PREFERENCES = frozenset({"primary", "primaryPreferred", "secondary", "secondaryPreferred", "nearest"})
# lower-case name as the driver accepts it -> the name we write
OPTIONS = {
    "authsource": "authSource",
    "authmechanism": "authMechanism",
    "tls": "tls",
    "ssl": "tls",
    "replicaset": "replicaSet",
    "readpreference": "readPreference",
    "appname": "appName",
    "directconnection": "directConnection",  # narrows what the driver connects to: the named host alone
}
PEM_FIELDS = ("tlsCAPem", "tlsCertificateKeyPem")
_HOSTNAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]{0,252})$")
_DATABASE = re.compile(r"^[^/\\. \"$\x00]{1,63}$")
_VALUE = re.compile(r"^[\x21-\x7e]{1,200}$")
_PEM = re.compile(r"^-----BEGIN [A-Z0-9 ]+-----\r?\n[A-Za-z0-9+/=\r\n]+-----END [A-Z0-9 ]+-----\s*", re.MULTILINE)


class UriRefused(ValidationFailed):
    """A tenant URI (or one of its options) outside the allowlist; `field` names the config setting."""

    code = "uri_refused"


@dataclass(frozen=True)
class TenantUri:
    """What a tenant's URI may say, as parsed; `uri()` writes it back with nothing else in it."""

    srv: bool
    hosts: tuple[tuple[str, int | None], ...]
    username: str | None
    password: str | None
    database: str
    options: tuple[tuple[str, str], ...]

    def uri(self, extra: Mapping[str, str] | None = None) -> str:
        """The rebuilt URI; `extra` are options of our own (the executor's files for PEMs given in the config)."""
        credentials = ""
        if self.username is not None:
            credentials = quote(self.username, safe="")
            if self.password is not None:
                credentials += ":" + quote(self.password, safe="")
            credentials += "@"
        hosts = ",".join(_host(host) + (f":{port}" if port is not None else "") for host, port in self.hosts)
        query = urlencode([*self.options, *(extra or {}).items()], quote_via=quote)
        scheme = SCHEMES[1] if self.srv else SCHEMES[0]
        return f"{scheme}{credentials}{hosts}/{quote(self.database, safe='')}" + (f"?{query}" if query else "")

    @property
    def nodes(self) -> list[tuple[str, int]]:
        return [(host, port or 27017) for host, port in self.hosts]


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def parse_tenant_uri(uri: str, *, field: str = "config.uri") -> TenantUri:
    """Parse `uri` under the allowlist; anything outside it is a `UriRefused` naming what."""
    if not isinstance(uri, str) or not uri.startswith(SCHEMES):
        raise UriRefused(field, "must be a mongodb:// or mongodb+srv:// URI")
    if any(ord(ch) < 33 or ord(ch) == 127 for ch in uri):
        raise UriRefused(field, "a URI may not contain whitespace or control characters")
    srv = uri.startswith(SCHEMES[1])
    rest = uri[len(SCHEMES[1] if srv else SCHEMES[0]) :]
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, host_list = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        if "@" in userinfo or "/" in userinfo:
            raise UriRefused(field, "the user name and password must be percent-encoded")
        username, password = unquote(user), (unquote(secret) if colon else None)
    hosts = tuple(_parse_host(part, field) for part in host_list.split(","))
    if srv and (len(hosts) != 1 or hosts[0][1] is not None):
        raise UriRefused(field, "a mongodb+srv URI names exactly one host and no port")
    database = unquote(path) if path else ""
    if database and not _DATABASE.match(database):
        raise UriRefused(field, f"{database!r} is not a database name")
    return TenantUri(srv, hosts, username, password, database, _parse_options(query, field))


def _parse_host(part: str, field: str) -> tuple[str, int | None]:
    text = unquote(part)
    if "/" in text or text.endswith(".sock"):
        raise UriRefused(field, f"{text!r} is a Unix socket path: tenants connect over TCP only")
    if text.startswith("["):
        host, bracket, port_text = text[1:].partition("]")
        if not bracket or (port_text and not port_text.startswith(":")):
            raise UriRefused(field, f"{text!r} is not a host")
        port_text = port_text[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise UriRefused(field, f"{text!r} is not an IPv6 address") from None
    else:
        host, _, port_text = text.partition(":")
        if not _HOSTNAME.match(host):
            raise UriRefused(field, f"{text!r} is not a host name")
    if not port_text:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UriRefused(field, f"{text!r} has no valid port")
    return host, int(port_text)


def _parse_options(query: str, field: str) -> tuple[tuple[str, str], ...]:
    options: dict[str, str] = {}
    for pair in re.split(r"[&;]", query):
        if not pair:
            continue
        raw_key, _, raw_value = pair.partition("=")
        key, value = unquote(raw_key), unquote(raw_value)
        name = OPTIONS.get(key.lower())
        if name is None:
            allowed = ", ".join(sorted(set(OPTIONS.values())))
            raise UriRefused(
                field, f"the URI option {key!r} is not allowed (allowed: {allowed}; timeouts are the scheduler's)"
            )
        if name in options:
            raise UriRefused(field, f"the URI option {name!r} is given twice")
        options[name] = _option_value(name, key, value, field)
    return tuple(options.items())


def _option_value(name: str, key: str, value: str, field: str) -> str:
    if not _VALUE.match(value):
        raise UriRefused(field, f"the URI option {key!r} has no usable value")
    if name == "authMechanism" and value not in AUTH_MECHANISMS:
        allowed = ", ".join(sorted(AUTH_MECHANISMS))
        raise UriRefused(field, f"authMechanism={value} is not allowed (allowed: {allowed})")
    if name in ("tls", "directConnection") and value.lower() not in ("true", "false"):
        raise UriRefused(field, f"{key}={value} must be true or false")
    if name == "readPreference" and value not in READ_PREFERENCES:
        raise UriRefused(field, f"readPreference={value} is not a read preference")
    return value.lower() if name in ("tls", "directConnection") else value


def check_pems(config: Mapping[str, Any], *, prefix: str = "config.") -> dict[str, str]:
    """The PEM texts a config gives for TLS (a CA, an X.509 client certificate and key), each checked to be
    PEM: a path or anything else is refused."""
    found: dict[str, str] = {}
    for name in PEM_FIELDS:
        value = config.get(name)
        if value is None:
            continue
        if not isinstance(value, str) or len(value) > 64 * 1024 or not _PEM.match(value):
            raise UriRefused(f"{prefix}{name}", "must be PEM text (-----BEGIN ...), not a file path")
        found[name] = value
    return found
