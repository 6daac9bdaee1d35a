"""Which executor start a worker uses: warm by default, cold when asked or when a command is set; workspace
hosts for the warm default executor unless a process per run is asked."""

from __future__ import annotations

import pytest
from syncjobs.shared.executor_protocol import EXECUTOR_COMMAND
from syncjobs.shared.settings import Settings, SettingsError
from syncjobs.worker.executor_hosts import ExecutorHosts
from syncjobs.worker.executor_process import ExecutorSpec
from syncjobs.worker.fork_server import ForkServer

URI = {"SYNCJOBS_MONGODB_URI": "mongodb://127.0.0.1:1"}


def spec(env: dict[str, str], fork_server: ForkServer) -> ExecutorSpec:
    return ExecutorSpec.from_settings(Settings.from_env(URI | env), fork_server)


def test_the_default_executor_is_forked_warm_unless_switched_off_or_replaced() -> None:
    fork_server = ForkServer({})
    warm = spec({}, fork_server)
    assert (warm.fork_server, warm.argv) == (fork_server, EXECUTOR_COMMAND)
    for value in ("false", "0", "no", "off", "FALSE"):
        cold = spec({"SYNCJOBS_WARM_EXECUTOR": value}, fork_server)
        assert (cold.fork_server, cold.argv) == (None, EXECUTOR_COMMAND)
    assert spec({"SYNCJOBS_WARM_EXECUTOR": "true"}, fork_server).fork_server is fork_server
    command = spec({"SYNCJOBS_EXECUTOR_COMMAND": "my-executor --flag"}, fork_server)
    assert (command.fork_server, command.argv) == (None, ("my-executor", "--flag"))


def test_a_bad_warm_executor_setting_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="SYNCJOBS_WARM_EXECUTOR must be true or false"):
        Settings.from_env(URI | {"SYNCJOBS_WARM_EXECUTOR": "maybe"})


def test_workspace_hosts_serve_the_warm_default_executor_unless_a_process_per_run_is_asked() -> None:
    fork_server = ForkServer({})
    hosts = ExecutorHosts(fork_server)

    def hosted(env: dict[str, str]) -> ExecutorHosts | None:
        return ExecutorSpec.from_settings(Settings.from_env(URI | env), fork_server, hosts=hosts).hosts

    assert hosted({}) is hosts and hosted({"SYNCJOBS_EXECUTOR_HOST": "workspace"}) is hosts
    assert hosted({"SYNCJOBS_EXECUTOR_HOST": "run"}) is None
    assert hosted({"SYNCJOBS_EXECUTOR_HOST": " Workspace "}) is hosts
    assert hosted({"SYNCJOBS_EXECUTOR_HOST": "workspace", "SYNCJOBS_WARM_EXECUTOR": "false"}) is None
    assert hosted({"SYNCJOBS_EXECUTOR_HOST": "workspace", "SYNCJOBS_EXECUTOR_COMMAND": "my-executor"}) is None


def test_a_bad_executor_host_setting_names_the_variable_and_the_choices() -> None:
    with pytest.raises(SettingsError, match="SYNCJOBS_EXECUTOR_HOST must be one of run, workspace, got 'job'"):
        Settings.from_env(URI | {"SYNCJOBS_EXECUTOR_HOST": "job"})
