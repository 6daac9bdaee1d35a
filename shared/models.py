"""Stored documents, the request bodies that become them, and run statuses: the one home of each (answers that
exist only at the API edge are in `api/schemas.py`). camelCase on the wire and in Mongo, `id` as a string."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar

from bson import ObjectId
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import InitErrorDetails, PydanticCustomError
from syncjobs.shared.secret_fields import REDACTED as REDACTED
from syncjobs.shared.secret_fields import redact


class RunStatus(StrEnum):
    """Where a run is: `pending` and `running` are active, every other status is final."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"  # a fire that found its job's previous run still going (overlap `skip`)
    MISSED = "missed"  # a fire due while no worker led, beyond the job's `catchUpFires`
    RESET = "reset"  # not a run: an operator cleared the job's cursors and resume point (reset-state)


ACTIVE_STATUSES = frozenset({RunStatus.PENDING, RunStatus.RUNNING})
FINISHED_STATUSES = frozenset(RunStatus) - ACTIVE_STATUSES
# An attempt that went wrong and may be retried; `cancelled` is never retried.
FAILED_STATUSES = frozenset({RunStatus.FAILED, RunStatus.TIMED_OUT})
# Runs that actually executed; a `skipped` or `missed` fire never started an executor.
EXECUTED_STATUSES = frozenset({RunStatus.SUCCEEDED, *FAILED_STATUSES, RunStatus.CANCELLED})
NOT_EXECUTED_STATUSES = frozenset({RunStatus.SKIPPED, RunStatus.MISSED})

RunTrigger = Literal["schedule", "manual", "retry", "reset", "backfill"]
RUN_TRIGGERS: tuple[RunTrigger, ...] = ("schedule", "manual", "retry", "reset", "backfill")
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=r"\S")]


class Camel(BaseModel):
    """camelCase on the wire and in Mongo; unknown fields are an error, never silently dropped, and types
    are strict: `"off"` is not a boolean and `"600"` is not a number."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", strict=True)


class Output(Camel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", strict=False)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="json")


def _id_str(value: Any) -> Any:
    return str(value) if isinstance(value, ObjectId) else value


OutputT = TypeVar("OutputT", bound=Output)


def from_document(model: type[OutputT], doc: dict[str, Any]) -> OutputT:
    """Turn a Mongo document into an output model: `_id` becomes `id`, ObjectIds become strings."""
    data = {key: _id_str(value) for key, value in doc.items() if key != "_id"}
    data["id"] = str(doc["_id"])
    return model.model_validate(data)


# --- workspaces and tokens ---


class WorkspaceInput(Camel):
    name: Name


class Workspace(Output):
    id: str
    name: str
    created_at: AwareDatetime | None = None


# --- data sources and destinations ---


class MongoSourceConfig(BaseModel):
    model_config = ConfigDict(extra="allow")
    uri: str = Field(min_length=1)
    database: str = Field(min_length=1)


class HttpSourceConfig(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    base_url: str = Field(alias="baseUrl", pattern=r"^(https?://|\*{8}$)")  # or the marker: "keep the stored one"
    entities: dict[str, dict[str, Any]] = Field(min_length=1)


class CommandSourceConfig(BaseModel):
    """A Singer tap the operator installed (`tap`, see SYNCJOBS_TAPS), or, by an admin only, a raw argv."""

    model_config = ConfigDict(extra="allow")
    tap: str | None = Field(default=None, min_length=1, max_length=200)
    command: list[Annotated[str, Field(min_length=1)]] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _tap_or_command(self) -> CommandSourceConfig:
        if (self.tap is None) == (self.command is None):
            raise PydanticCustomError("tap_or_command", "give exactly one of `tap` (an installed tap) or `command`")
        return self


def refuse_nul_keys(value: Any, path: str = "") -> None:
    """A NUL in a key cannot be stored (BSON keys are C strings): a 422 naming where, never a 500."""
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in str(key):
                raise ValueError(f"a key may not contain a NUL character (at {path or 'the top'})")
            refuse_nul_keys(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for item in value:
            refuse_nul_keys(item, path)


_SOURCE_CONFIGS: dict[str, type[BaseModel]] = {
    "mongodb": MongoSourceConfig,
    "http": HttpSourceConfig,
    "command": CommandSourceConfig,
}


class DataSourceInput(Camel):
    name: Name
    kind: Literal["mongodb", "http", "command"]
    config: dict[str, Any]

    @field_validator("config")
    @classmethod
    def _no_nul_in_keys(cls, config: dict[str, Any]) -> dict[str, Any]:
        refuse_nul_keys(config)
        return config

    @model_validator(mode="after")
    def _config_fits_kind(self) -> DataSourceInput:
        try:
            _SOURCE_CONFIGS[self.kind].model_validate(self.config)
        except ValidationError as exc:
            # Re-raised under `config`, so a 422 names `config.uri` rather than a bare `uri`.
            raise ValidationError.from_exception_data(
                type(self).__name__,
                [
                    # A custom error type (e.g. `tap_or_command`) is re-raised as itself, message and all.
                    InitErrorDetails(
                        type=PydanticCustomError(err["type"], err["msg"]),
                        loc=("config", *err["loc"]),
                        input=err["input"],
                    )
                    for err in exc.errors(include_url=False)
                ],
            ) from None
        return self


class DataSource(Output):
    id: str
    workspace_id: str
    name: str
    kind: str
    config: dict[str, Any]
    version: int = 1
    created_at: AwareDatetime | None = None
    updated_at: AwareDatetime | None = None

    def to_json(self) -> dict[str, Any]:
        body = super().to_json()
        body["config"] = redact(self.config)
        return body


class DestinationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    uri: str = Field(min_length=1)
    database: str = Field(min_length=1, max_length=63, pattern=r"^[^/\\. \"$]+$")
    # TLS material as PEM text, never a path (shared/tenant_uri.py): left out of the stored config when absent.
    tls_ca_pem: str | None = Field(default=None, alias="tlsCAPem", max_length=65536, exclude_if=lambda v: v is None)
    tls_certificate_key_pem: str | None = Field(
        default=None, alias="tlsCertificateKeyPem", max_length=65536, exclude_if=lambda v: v is None
    )


class DestinationInput(Camel):
    name: Name
    kind: Literal["mongodb"] = "mongodb"
    config: DestinationConfig


class Destination(DataSource):
    pass


# --- sync jobs ---


class Schedule(Camel):
    cron: str = Field(min_length=1, max_length=200)
    timezone: str = Field(default="UTC", min_length=1, max_length=64)


EntityName = Annotated[str, Field(min_length=1, max_length=120)]
MAX_ENTITY_NAMES = 1000  # a ~195 KB include list once slowed every tenant's runs: bounded at write time


class EntityFilter(Camel):
    include: list[EntityName] | None = Field(default=None, max_length=MAX_ENTITY_NAMES)
    exclude: list[EntityName] = Field(default_factory=list, max_length=MAX_ENTITY_NAMES)


class RetryPolicy(Camel):
    max_attempts: int = Field(default=1, ge=1, le=20)
    backoff_seconds: float = Field(default=30.0, ge=0, le=86400)


# A job's defaults, one home for the input that creates it and the document read back (older documents
# may lack the later fields).
OverlapPolicy = Literal["skip", "queue", "allow"]
SyncMode = Literal["full", "incremental", "changeStream"]
DEFAULT_OVERLAP: OverlapPolicy = "skip"
DEFAULT_TIMEOUT_SECONDS = 3600
DEFAULT_CATCH_UP_FIRES = 1
DEFAULT_MAX_DELETE_FRACTION = 0.5
OnMissingCursor = Literal["skip", "include"]
OnHistoryLost = Literal["fail", "resnapshot"]


class SyncJobInput(Camel):
    """The editable fields of a job: what POST creates and PUT replaces."""

    name: Name
    data_source_id: str
    destination_database_id: str
    schedule: Schedule
    sync_mode: SyncMode = "full"
    entities: EntityFilter = Field(default_factory=EntityFilter)
    enabled: bool = True
    overlap: OverlapPolicy = DEFAULT_OVERLAP
    timeout_seconds: int = Field(default=DEFAULT_TIMEOUT_SECONDS, ge=1, le=7 * 86400)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    catch_up_fires: int = Field(default=DEFAULT_CATCH_UP_FIRES, ge=0, le=1000)
    # A full run deleting more than this share of an entity's (>= 100) destination documents deletes none.
    max_delete_fraction: float = Field(default=DEFAULT_MAX_DELETE_FRACTION, ge=0, le=1)
    # Incremental: re-read from the saved cursor minus this, writing only changed documents (late arrivals).
    lookback_seconds: float = Field(default=0, ge=0, le=30 * 86400)
    # Incremental: documents without the cursor field are counted (`skip`) or re-read each run (`include`).
    on_missing_cursor: OnMissingCursor = "skip"
    # changeStream: when the source no longer has the stream's history, fail (wait for a reset) or resnapshot.
    on_history_lost: OnHistoryLost = "fail"


class SyncJob(Output):
    id: str
    workspace_id: str
    name: str
    data_source_id: str
    destination_database_id: str
    schedule: Schedule
    sync_mode: SyncMode
    entities: EntityFilter
    enabled: bool
    overlap: OverlapPolicy = DEFAULT_OVERLAP
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    catch_up_fires: int = DEFAULT_CATCH_UP_FIRES
    max_delete_fraction: float = DEFAULT_MAX_DELETE_FRACTION
    lookback_seconds: float = 0
    on_missing_cursor: OnMissingCursor = "skip"
    on_history_lost: OnHistoryLost = "fail"
    next_run_at: AwareDatetime | None = None
    last_run_at: AwareDatetime | None = None
    last_status: RunStatus | None = None
    last_error: str | None = None
    last_duration_ms: int | None = None
    average_duration_ms: float | None = None
    paused: bool = False
    paused_until: AwareDatetime | None = None  # a paused job resumes by itself at its first fire from then
    pause_note: str | None = None
    skip_count: int = 0  # how many of the next fires that would run are skipped
    version: int = 1
    created_at: AwareDatetime | None = None
    updated_at: AwareDatetime | None = None


class PauseInput(Camel):
    until: AwareDatetime | None = Field(default=None, strict=False)
    note: str | None = Field(default=None, max_length=500)


class SkipInput(Camel):
    count: int = Field(ge=1, le=1000)


# --- runs ---


class JobRun(Output):
    id: str
    job_id: str
    workspace_id: str
    trigger: RunTrigger
    scheduled_for: AwareDatetime
    attempt: int = 1
    status: RunStatus
    worker_id: str | None = None
    fencing_token: int | None = None
    created_at: AwareDatetime | None = None
    started_at: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None
    duration_ms: int | None = None
    exit_code: int | None = None
    error: str | None = None
    stats: dict[str, Any] | None = None
    details: list[dict[str, Any]] | None = None
    progress: dict[str, Any] | None = None
    stderr_tail: str | None = None  # the executor's last 4 KiB of stderr, kept when a run did not succeed
    due_at: AwareDatetime | None = None  # a retry's earliest start
    cancel_requested: bool = False  # a client asked to cancel it while it ran; its replica kills it


class BackfillInput(Camel):
    """The fires of [from, to) to run now; `overlap` (default: the job's) `allow` runs them side by side,
    otherwise one at a time, oldest first (a backfill fire waits, it is never skipped)."""

    from_: AwareDatetime = Field(alias="from", strict=False)
    to: AwareDatetime = Field(strict=False)
    overlap: Literal["skip", "queue", "allow"] | None = None


class ToggleInput(Camel):
    enabled: bool | None = None


def parse_object_id(value: str) -> ObjectId | None:
    """A malformed id is simply one that names nothing."""
    return ObjectId(value) if ObjectId.is_valid(value) else None


# --- webhooks ---

WebhookEvent = Literal[
    "alert.opened", "alert.resolved", "run.started", "run.succeeded", "run.failed", "run.cancelled", "run.missed"
]
WEBHOOK_EVENTS: tuple[WebhookEvent, ...] = ("alert.opened", "alert.resolved")  # a subscription's default
RUN_EVENTS: tuple[WebhookEvent, ...] = ("run.started", "run.succeeded", "run.failed", "run.cancelled", "run.missed")


class WebhookInput(Camel):
    url: HttpUrl
    events: list[WebhookEvent] = Field(default_factory=lambda: list(WEBHOOK_EVENTS), min_length=1)
    secret: str | None = Field(default=None, min_length=16, max_length=256)

    @field_validator("url", mode="before")
    @classmethod
    def _no_control_characters(cls, value: Any) -> Any:
        """A CR or LF in a URL is a header injection attempt, refused rather than silently dropped."""
        if isinstance(value, str) and any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise ValueError("a URL may not contain control characters (CR, LF, tab...)")
        return value


class Webhook(Output):
    id: str
    workspace_id: str
    url: str
    events: list[str]
    version: int = 1
    created_at: AwareDatetime | None = None


class CreatedWebhook(Webhook):
    """The create's answer: the only document that ever carries the secret."""

    secret: str


class WebhookDelivery(Output):
    id: str
    webhook_id: str
    event: str
    job_id: str
    kind: str
    outcome: Literal["delivered", "failed"]
    attempts: int
    response_status: int | None = None
    error: str | None = None
    created_at: AwareDatetime
    finished_at: AwareDatetime
