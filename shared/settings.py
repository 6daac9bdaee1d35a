"""Settings from SYNCJOBS_* environment variables, read once at process start."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

EXECUTOR_HOSTS = ("run", "workspace")  # SYNCJOBS_EXECUTOR_HOST: a process per run, or a host per workspace


class SettingsError(ValueError):
    """An environment variable holds a value of the wrong shape."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be >= {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in (env.get(name) or "").split(",") if part.strip())


def _networks(env: Mapping[str, str]) -> tuple[str, ...]:
    cidrs = _list(env, "SYNCJOBS_ALLOWED_NETWORKS")
    for cidr in cidrs:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise SettingsError(f"SYNCJOBS_ALLOWED_NETWORKS: {cidr!r} is not a CIDR network") from None
    return cidrs


def _taps(env: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """SYNCJOBS_TAPS (a JSON object, name -> argv) merged over the file SYNCJOBS_TAPS_FILE (the same JSON)."""
    taps: dict[str, tuple[str, ...]] = {}
    sources: list[tuple[str, str]] = []
    if path := env.get("SYNCJOBS_TAPS_FILE"):
        try:
            sources.append(("SYNCJOBS_TAPS_FILE", Path(path).read_text()))
        except OSError as exc:
            raise SettingsError(f"SYNCJOBS_TAPS_FILE: cannot read {path}: {exc.strerror}") from None
    if raw := env.get("SYNCJOBS_TAPS"):
        sources.append(("SYNCJOBS_TAPS", raw))
    for name, text in sources:
        try:
            value = json.loads(text)
        except ValueError:
            raise SettingsError(f"{name} must be a JSON object of tap name -> argv list") from None
        if not isinstance(value, dict) or not all(
            isinstance(argv, list) and argv and all(isinstance(a, str) and a for a in argv) for argv in value.values()
        ):
            raise SettingsError(f"{name} must be a JSON object of tap name -> non-empty argv list of strings")
        taps.update({str(tap): tuple(argv) for tap, argv in value.items()})
    return taps


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = (env.get(name) or "").strip().lower()
    if raw == "":
        return default
    if raw not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class AlertThresholds:
    """When a job's recent runs open an alert (see the monitoring endpoint)."""

    failure_rate: float = 0.5
    min_executions: int = 5
    consecutive_failures: int = 3
    long_duration_ms: int = 5 * 60 * 1000
    change_stream_lag_seconds: int = 86400


@dataclass(frozen=True)
class Settings:
    mongodb_uri: str | None = None
    database: str = "syncjobs"
    api_host: str = "0.0.0.0"
    api_port: int = 8080
    admin_token: str | None = None
    log_level: str = "info"
    # The scheduler lease: a SIGKILLed leader is replaced within about TTL + 1 s (docs/DECISIONS.md).
    lease_ttl_seconds: int = 3
    # Each claimed run's lease: outlasts a replica set election (~12 s), so an election kills no run.
    run_lease_seconds: int = 15
    worker_id: str = field(default_factory=default_worker_id)
    poll_seconds: float = 5.0
    max_concurrent_runs: int = 4
    # Running runs per workspace across the whole cluster; None is unlimited.
    max_runs_per_workspace: int | None = None
    # The fraction of a replica's slots one workspace may hold while another has runs waiting; past it, with several
    # workspaces, it leaves one slot free (worker/fairness.py; 1: no limit, no slot kept).
    workspace_share: float = 0.5
    # The executor's address-space limit (RLIMIT_AS), in MiB.
    executor_memory_mb: int = 1024
    shutdown_grace_seconds: float = 30.0
    # argv prefix that runs one executor; the run id is appended as `--run-id ID`.
    executor_command: tuple[str, ...] = ()
    # Without an executor_command: fork each executor from a warm fork server (True) or start a new
    # interpreter per run (False).
    warm_executor: bool = True
    # With the warm executor: `workspace` hands a workspace's runs, one at a time, to long-lived executor
    # hosts of that workspace (executor/host.py, docs/DECISIONS.md); `run` forks a process per run.
    executor_host: str = "workspace"
    run_retention_days: int = 30
    worker_metrics_port: int | None = None
    # How often the leading worker re-evaluates jobs with open alerts (resolving those that stopped holding).
    alert_sweep_seconds: int = 60
    alerts: AlertThresholds = field(default_factory=AlertThresholds)
    # Fernet keys, first encrypts (shared/secrets.py); the api, worker and executor refuse to start without.
    secret_keys: tuple[str, ...] = ()
    # CIDRs that tenant connections may reach although the egress policy refuses them (shared/egress.py).
    allowed_networks: tuple[str, ...] = ()
    # Databases other than the control one that tenants may use on the control server ("*": any).
    control_cluster_databases: tuple[str, ...] = ()
    # The Singer taps command sources may name: name -> argv.
    taps: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Start against a replica set with arbiters anyway (shared/mongo.py: check_replica_set names the risk).
    allow_arbiters: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        default, alerts = cls(), AlertThresholds()  # every default is written once: on the fields above
        metrics_port = _int(env, "SYNCJOBS_WORKER_METRICS_PORT", 0)
        executor_command = env.get("SYNCJOBS_EXECUTOR_COMMAND", "").split()
        return cls(
            mongodb_uri=env.get("SYNCJOBS_MONGODB_URI") or None,
            database=env.get("SYNCJOBS_DATABASE") or default.database,
            api_host=env.get("SYNCJOBS_API_HOST") or default.api_host,
            api_port=_int(env, "SYNCJOBS_API_PORT", default.api_port),
            admin_token=env.get("SYNCJOBS_ADMIN_TOKEN") or None,
            log_level=(env.get("SYNCJOBS_LOG_LEVEL") or default.log_level).lower(),
            lease_ttl_seconds=_int(env, "SYNCJOBS_LEASE_TTL_SECONDS", default.lease_ttl_seconds, minimum=1),
            run_lease_seconds=_int(env, "SYNCJOBS_RUN_LEASE_SECONDS", default.run_lease_seconds, minimum=1),
            worker_id=env.get("SYNCJOBS_WORKER_ID") or default.worker_id,
            poll_seconds=_float(env, "SYNCJOBS_POLL_SECONDS", default.poll_seconds),
            max_concurrent_runs=_int(env, "SYNCJOBS_MAX_CONCURRENT_RUNS", default.max_concurrent_runs, minimum=1),
            max_runs_per_workspace=_int(env, "SYNCJOBS_MAX_RUNS_PER_WORKSPACE", 0, minimum=0) or None,
            workspace_share=min(1.0, max(0.01, _float(env, "SYNCJOBS_WORKSPACE_SHARE", default.workspace_share))),
            executor_memory_mb=_int(env, "SYNCJOBS_EXECUTOR_MEMORY_MB", default.executor_memory_mb, minimum=64),
            shutdown_grace_seconds=_float(env, "SYNCJOBS_SHUTDOWN_GRACE_SECONDS", default.shutdown_grace_seconds),
            executor_command=tuple(executor_command),
            warm_executor=_bool(env, "SYNCJOBS_WARM_EXECUTOR", default.warm_executor),
            executor_host=_choice(env, "SYNCJOBS_EXECUTOR_HOST", default.executor_host, EXECUTOR_HOSTS),
            run_retention_days=_int(env, "SYNCJOBS_RUN_RETENTION_DAYS", default.run_retention_days, minimum=1),
            worker_metrics_port=metrics_port or None,
            alert_sweep_seconds=_int(env, "SYNCJOBS_ALERT_SWEEP_SECONDS", default.alert_sweep_seconds, minimum=1),
            alerts=AlertThresholds(
                failure_rate=_float(env, "SYNCJOBS_ALERT_FAILURE_RATE", alerts.failure_rate),
                min_executions=_int(env, "SYNCJOBS_ALERT_MIN_EXECUTIONS", alerts.min_executions),
                consecutive_failures=_int(
                    env, "SYNCJOBS_ALERT_CONSECUTIVE_FAILURES", alerts.consecutive_failures, minimum=1
                ),
                long_duration_ms=_int(env, "SYNCJOBS_ALERT_LONG_DURATION_SECONDS", alerts.long_duration_ms // 1000)
                * 1000,
                change_stream_lag_seconds=_int(
                    env, "SYNCJOBS_ALERT_CHANGE_STREAM_LAG_SECONDS", alerts.change_stream_lag_seconds, minimum=1
                ),
            ),
            secret_keys=_list(env, "SYNCJOBS_SECRET_KEYS"),
            allowed_networks=_networks(env),
            control_cluster_databases=_list(env, "SYNCJOBS_CONTROL_CLUSTER_DATABASES"),
            taps=_taps(env),
            allow_arbiters=_bool(env, "SYNCJOBS_ALLOW_ARBITERS", default.allow_arbiters),
        )

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    def require_mongodb_uri(self) -> str:
        if not self.mongodb_uri:
            raise SettingsError("SYNCJOBS_MONGODB_URI is not set")
        return self.mongodb_uri
