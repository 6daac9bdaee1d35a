"""docker-compose.yml and the Dockerfile, checked by parsing them (no Docker engine here)."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return compose["services"]  # type: ignore[no-any-return]


def argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else command


def repl_set_name(mongo: dict[str, Any]) -> str:
    command = argv(mongo["command"])
    return command[command.index("--replSet") + 1]


def test_mongo_runs_a_replica_set_that_the_compose_file_initiates(services: dict[str, Any]) -> None:
    mongo = services["mongo"]
    assert mongo["image"].startswith("mongo:")
    name = repl_set_name(mongo)
    assert "--bind_ip_all" in argv(mongo["command"])
    initiators = [" ".join(argv(mongo["healthcheck"]["test"]))]
    initiators += [" ".join(argv(s.get("command", []))) for n, s in services.items() if n != "mongo"]
    initiate = next(text for text in initiators if "rs.initiate" in text)
    # The member is named as the other containers reach it, with the set's own name.
    assert f"_id: '{name}'" in initiate or f'_id: "{name}"' in initiate
    assert "host: 'mongo:27017'" in initiate or 'host: "mongo:27017"' in initiate
    assert "isWritablePrimary" in initiate  # healthy only once a primary accepts writes
    assert any("/data/db" in volume for volume in mongo["volumes"])


@pytest.mark.parametrize(
    ("service", "command", "replicas"), [("api", ["syncjobs", "api"], 3), ("worker", ["syncjobs", "worker"], 2)]
)
def test_api_and_worker_replicas(services: dict[str, Any], service: str, command: list[str], replicas: int) -> None:
    spec = services[service]
    assert argv(spec["command"]) == command
    assert spec["deploy"]["replicas"] == replicas
    assert spec["depends_on"]["mongo"]["condition"] == "service_healthy"
    assert spec["build"] == "."
    uri = urlsplit(spec["environment"]["SYNCJOBS_MONGODB_URI"])
    assert uri.scheme == "mongodb"
    assert uri.hostname == "mongo"
    assert parse_qs(uri.query)["replicaSet"] == [repl_set_name(services["mongo"])]
    assert "directConnection" not in uri.query


def test_the_api_is_reachable_and_checked(services: dict[str, Any]) -> None:
    api = services["api"]
    assert api["environment"]["SYNCJOBS_API_PORT"] == "8080"
    assert "SYNCJOBS_ADMIN_TOKEN" in api["environment"]
    # One host port per replica: a fixed single port could not be bound three times.
    [ports] = api["ports"]
    first, last = (int(p) for p in re.fullmatch(r"(\d+)-(\d+):8080", ports).groups())  # type: ignore[union-attr]
    assert last - first + 1 == api["deploy"]["replicas"]
    assert "/healthz" in " ".join(argv(api["healthcheck"]["test"]))


def test_workers_get_time_to_finish_running_syncs(services: dict[str, Any]) -> None:
    worker = services["worker"]
    grace = float(worker["environment"]["SYNCJOBS_SHUTDOWN_GRACE_SECONDS"])
    assert float(worker["stop_grace_period"].removesuffix("s")) > grace
    assert worker["init"] is True


def test_every_setting_in_the_compose_file_exists() -> None:
    settings_source = (ROOT / "shared" / "settings.py").read_text()
    names = set(re.findall(r"\b(SYNCJOBS_[A-Z_]+)\b", (ROOT / "docker-compose.yml").read_text()))
    assert names
    assert not [name for name in names if f'"{name}"' not in settings_source]


def test_the_dockerfile_installs_every_package_and_the_cli() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = list(pyproject["tool"]["setuptools"]["package-dir"].values())
    copied = set(re.findall(r"^COPY (\S+) ", dockerfile, re.MULTILINE))
    assert not [package for package in packages if package not in copied]
    assert {"pyproject.toml", "README.md"} <= set(re.findall(r"^COPY (.+) \./$", dockerfile, re.MULTILINE)[0].split())
    assert re.search(r"^RUN pip install \.", dockerfile, re.MULTILINE)
    assert "syncjobs" in pyproject["project"]["scripts"]
    assert re.search(r"^FROM python:3\.11", dockerfile, re.MULTILINE)
    assert re.search(r"^USER (?!root)", dockerfile, re.MULTILINE)


def test_the_database_requires_authentication_and_syncjobs_has_its_own_user(services: dict[str, Any]) -> None:
    mongo = services["mongo"]
    command = argv(mongo["command"])
    assert "--auth" in command and "--keyFile" in command  # a replica set with auth needs a shared key file
    key_file = command[command.index("--keyFile") + 1]
    assert any(volume.endswith(":ro") and key_file.startswith(volume.split(":")[1]) for volume in mongo["volumes"])
    assert mongo["depends_on"]["mongo-keyfile"]["condition"] == "service_completed_successfully"
    assert mongo["environment"]["MONGO_INITDB_ROOT_USERNAME"] == "root"
    assert "${MONGO_ROOT_PASSWORD:?" in mongo["environment"]["MONGO_INITDB_ROOT_PASSWORD"]
    script = " ".join(argv(mongo["healthcheck"]["test"]))
    assert "createUser({user: 'syncjobs'" in script and "roles: [{role: 'readWrite', db: 'syncjobs'}]" in script
    for service in ("api", "worker"):
        env = services[service]["environment"]
        uri = urlsplit(env["SYNCJOBS_MONGODB_URI"])
        assert (uri.username, uri.password) == ("syncjobs", "${MONGO_SYNCJOBS_PASSWORD}")
        assert parse_qs(uri.query)["authSource"] == ["admin"]
        assert env["SYNCJOBS_SECRET_KEYS"].startswith("${SYNCJOBS_SECRET_KEYS:?")
        assert "SYNCJOBS_ALLOWED_NETWORKS" not in env  # the production egress policy: nothing extra allowed
