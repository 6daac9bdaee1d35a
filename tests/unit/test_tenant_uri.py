"""Tenant URIs parsed and rebuilt from an allowlist: what passes comes back with nothing else in it, and
every other option is refused naming it (issue 21, findings 2, 3 and 9)."""

from __future__ import annotations

import pytest
from syncjobs.shared.tenant_uri import UriRefused, check_pems, parse_tenant_uri

PEM = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"


def test_the_allowed_parts_are_rebuilt() -> None:
    uri = "mongodb://u%40x:p%3Aw%2F@db1.example:27018,[2606:4700::1]/admin?replicaSet=rs0&tls=TRUE&authSource=admin"
    parsed = parse_tenant_uri(uri + "&readPreference=secondary&appName=me&authMechanism=SCRAM-SHA-256")
    assert parsed.username == "u@x" and parsed.password == "p:w/"
    assert parsed.nodes == [("db1.example", 27018), ("2606:4700::1", 27017)]
    assert parsed.uri() == (
        "mongodb://u%40x:p%3Aw%2F@db1.example:27018,[2606:4700::1]/admin?replicaSet=rs0&tls=true&authSource=admin"
        "&readPreference=secondary&appName=me&authMechanism=SCRAM-SHA-256"
    )
    assert parse_tenant_uri("mongodb+srv://cluster.example/").uri() == "mongodb+srv://cluster.example/"


@pytest.mark.parametrize(
    ("uri", "named"),
    [
        ("mongodb://h.example/?timeoutMS=6", "'timeoutMS'"),
        ("mongodb://h.example/?serverSelectionTimeoutMS=1", "'serverSelectionTimeoutMS'"),
        ("mongodb://h.example/?authMechanism=MONGODB-OIDC", "authMechanism=MONGODB-OIDC"),
        ("mongodb://h.example/?authMechanism=MONGODB-AWS", "authMechanism=MONGODB-AWS"),
        ("mongodb://h.example/?authMechanismProperties=ENVIRONMENT:k8s", "'authMechanismProperties'"),
        ("mongodb://h.example/?tls=true&tlsCAFile=/etc/passwd", "'tlsCAFile'"),
        ("mongodb://h.example/?tlsCertificateKeyFile=/x", "'tlsCertificateKeyFile'"),
        ("mongodb://h.example/?loadBalanced=true", "'loadBalanced'"),
        ("mongodb://%2Ftmp%2Fmongodb-27017.sock/", "Unix socket"),
        ("mongodb://h.example,%2Fvar%2Frun%2Fm.sock/", "Unix socket"),
        ("mongodb://h.example/?replicaSet=a&replicaSet=b", "twice"),
        ("mongodb://h.example:99999/", "valid port"),
        ("mongodb://h.example/?tls=yes", "true or false"),
        ("mongodb+srv://a.example,b.example/", "exactly one host"),
        ("http://h.example/", "mongodb://"),
    ],
)
def test_everything_else_is_refused_naming_it(uri: str, named: str) -> None:
    with pytest.raises(UriRefused, match=r"config\.uri") as refused:
        parse_tenant_uri(uri)
    assert named in str(refused.value)


def test_a_refusal_never_echoes_the_password() -> None:
    with pytest.raises(UriRefused) as refused:
        parse_tenant_uri("mongodb://u:s3cr3t@h.example/?timeoutMS=1")
    assert "s3cr3t" not in str(refused.value)


def test_tls_material_is_pem_text_never_a_path() -> None:
    assert check_pems({"tlsCAPem": PEM}) == {"tlsCAPem": PEM}
    with pytest.raises(UriRefused, match=r"config\.tlsCAPem"):
        check_pems({"tlsCAPem": "/etc/ssl/certs/ca.pem"})
