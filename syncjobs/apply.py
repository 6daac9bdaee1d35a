"""`syncjobs apply -f FILE`: sources, destinations and jobs declared by name, made to match through the API.

The plan compares only the fields the file gives (the API fills the others with defaults) and a secret the
API answers as `********` counts as unchanged, so a second apply of the same file changes nothing.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from syncjobs.client import SECRET_MARK, ApiClient, ClientError

# (file key, API collection, label), in the order they must exist: a job names its source and destination.
KINDS = (
    ("sources", "data-sources", "source"),
    ("destinations", "destinations", "destination"),
    ("jobs", "sync-jobs", "job"),
)
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Change:
    action: str  # create | update | unchanged
    label: str
    collection: str
    name: str
    body: dict[str, Any]
    current_id: str | None
    fields: tuple[str, ...] = ()  # what an update changes

    def line(self) -> str:
        changed = f" ({', '.join(self.fields)})" if self.fields else ""
        return f"{self.action:<9} {self.label} {self.name}{changed}"


def _expanded(value: Any, path: str) -> Any:
    """`${VAR}` in the file's string values, from the environment (comments are not values)."""

    def variable(match: re.Match[str]) -> str:
        if (found := os.environ.get(match.group(1))) is None:
            raise ClientError(f"{path}: ${{{match.group(1)}}} is not set")
        return found

    if isinstance(value, str):
        return VARIABLE.sub(variable, value)
    if isinstance(value, dict):
        return {key: _expanded(item, path) for key, item in value.items()}
    if isinstance(value, list):
        return [_expanded(item, path) for item in value]
    return value


def load(path: str) -> dict[str, list[dict[str, Any]]]:
    """The file (YAML, or JSON) with `${VAR}` taken from the environment: URIs and secrets stay out of it."""
    try:
        document = _expanded(yaml.safe_load(Path(path).read_text()) or {}, path)
    except (OSError, yaml.YAMLError) as exc:
        raise ClientError(f"{path}: {exc}") from None
    if not isinstance(document, dict) or set(document) - {key for key, _, _ in KINDS}:
        raise ClientError(f"{path}: expected a mapping of sources, destinations and jobs")
    for key, _, label in KINDS:
        entries = document.setdefault(key, [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) and e.get("name") for e in entries):
            raise ClientError(f"{path}: {key} must be a list of mappings, each with a name ({label})")
    return document


def _differs(wanted: Any, current: Any) -> bool:
    """Whether `current` (an API answer) differs from `wanted` in a field `wanted` gives."""
    if current == SECRET_MARK:
        return False  # write-only: the stored value cannot be compared
    if isinstance(wanted, dict) and isinstance(current, dict):
        return any(_differs(value, current.get(key)) for key, value in wanted.items())
    return bool(wanted != current)


def job_body(job: dict[str, Any], ids: dict[str, dict[str, str]]) -> dict[str, Any]:
    """A job's API body: `source` and `destination` name objects of the same file or the workspace."""
    body = {key: value for key, value in job.items() if key not in ("source", "destination")}
    for key, field, kind in (
        ("source", "dataSourceId", "sources"),
        ("destination", "destinationDatabaseId", "destinations"),
    ):
        if key in job:
            if job[key] not in ids[kind]:
                raise ClientError(f"job {job['name']}: no {key} named {job[key]!r}")
            body[field] = ids[kind][job[key]]
    return body


def plan(client: ApiClient, document: dict[str, list[dict[str, Any]]]) -> list[Change]:
    changes: list[Change] = []
    ids: dict[str, dict[str, str]] = {}
    for key, collection, label in KINDS:
        existing = {item["name"]: item for item in client.items(client.ws(f"/{collection}"))}
        ids[key] = {name: item["id"] for name, item in existing.items()}
        for entry in document[key]:
            name = entry["name"]
            body = job_body(entry, ids) if key == "jobs" else entry
            ids[key].setdefault(name, f"<{label} {name}>")  # a job may name a source created by this apply
            current = existing.get(name)
            if current is None:
                changes.append(Change("create", label, collection, name, body, None))
                continue
            fields = tuple(field for field, value in body.items() if _differs(value, current.get(field)))
            action = "update" if fields else "unchanged"
            changes.append(Change(action, label, collection, name, body, current["id"], fields))
    return changes


def execute(client: ApiClient, changes: list[Change]) -> None:
    """Create or replace in plan order; a job's placeholder ids become the ids just made."""
    made: dict[str, str] = {}
    for change in changes:
        body = {k: made.get(v, v) if isinstance(v, str) else v for k, v in change.body.items()}
        if change.action == "create":
            made[f"<{change.label} {change.name}>"] = client.call("POST", client.ws(f"/{change.collection}"), body)[
                "id"
            ]
        elif change.action == "update":
            client.call("PUT", client.ws(f"/{change.collection}/{change.current_id}"), body)
