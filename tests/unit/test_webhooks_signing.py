"""What a webhook receives: the signature over the exact bytes, and the Slack-shaped body."""

from __future__ import annotations

import hashlib
import hmac
import json

from syncjobs.worker.notifier import AlertEvent, request_body, sign

EVENT = AlertEvent(
    "alert.opened",
    "consecutive_failures",
    "j1",
    {"event": "alert.opened", "alert": {"kind": "consecutive_failures"}, "text": "syncjobs alert opened on 'orders'"},
)


def test_the_signature_is_the_hex_hmac_sha256_of_the_raw_body() -> None:
    body = request_body("https://ops.example.com/hook", EVENT)
    assert sign("s3cret", body) == "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert sign("s3cret", body) != sign("other", body)
    assert sign("s3cret", body) != sign("s3cret", body + b" ")


def test_slack_gets_only_a_text_field_and_everyone_else_the_whole_event() -> None:
    assert json.loads(request_body("https://hooks.slack.com/services/T0/B0/XYZ", EVENT)) == {
        "text": "syncjobs alert opened on 'orders'"
    }
    assert json.loads(request_body("https://hooks.slack.com.evil.example/x", EVENT)) == EVENT.payload
    assert json.loads(request_body("http://127.0.0.1:9/hook", EVENT)) == EVENT.payload
