"""What the worker logs of a host that died idle: its own stderr's tail, never a secret of a run it served."""

from __future__ import annotations

from syncjobs.shared.secret_fields import REDACTED
from syncjobs.worker.executor_hosts import scrubbed_tail


def test_a_hosts_tail_is_logged_without_the_secrets_of_its_runs() -> None:
    uri = "mongodb://writer:pa55word@warehouse:27017/"
    tail = f"Traceback ...\nServerSelectionTimeoutError: {uri} and pa55word, token tok_123456789\n".encode()

    logged = scrubbed_tail(tail, {"pa55word", uri, "tok_123456789"})

    assert "pa55word" not in logged and "tok_123456789" not in logged and "writer" not in logged
    assert logged == f"Traceback ...\nServerSelectionTimeoutError: {REDACTED} and {REDACTED}, token {REDACTED}"


def test_a_tail_cut_inside_a_character_is_still_logged() -> None:
    assert scrubbed_tail("é".encode()[1:] + b" end\n", ()) == "\ufffd end"
