"""The executor's pure parts: entity selection, batch planning, hashing, cursors, HTTP helpers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from bson import ObjectId
from syncjobs.executor.bson_ids import id_key
from syncjobs.executor.destination import HASH_FIELD, content_hash
from syncjobs.executor.sources import SourceError
from syncjobs.executor.sources.command import _with_id as singer_record
from syncjobs.executor.sources.http import _link_next, dig, retry_after_seconds
from syncjobs.executor.sources.mongodb import past_cursor_filter
from syncjobs.executor.sync import EntityResult, EntitySelectionError, EntityStats, plan_batch, select_entities


def test_selection_defaults_to_everything_minus_exclude() -> None:
    assert select_entities(["a", "b", "c"], None, ["b"]) == ["a", "c"]


def test_selection_keeps_include_order_and_applies_exclude() -> None:
    assert select_entities(["a", "b", "c"], ["c", "a", "b"], ["b"]) == ["c", "a"]


def test_include_of_a_missing_entity_names_it() -> None:
    with pytest.raises(EntitySelectionError, match="nope") as caught:
        select_entities(["a", "b"], ["a", "nope"], [])
    assert "offers: a, b" in str(caught.value)


def test_hash_ignores_the_hash_field_but_sees_content_and_types() -> None:
    doc = {"_id": 1, "n": 1}
    assert content_hash(doc) == content_hash({**doc, HASH_FIELD: "old"})
    assert content_hash(doc) != content_hash({"_id": 1, "n": 2})
    assert content_hash(doc) != content_hash({"_id": 1, "n": 1.0})


def test_id_keys_tell_types_apart_and_accept_composite_ids() -> None:
    assert id_key(1) != id_key("1")
    assert id_key(True) != id_key(1)
    assert id_key({"a": 1, "b": 2}) == id_key({"a": 1, "b": 2})
    assert id_key({"a": 1, "b": 2}) != id_key({"b": 2, "a": 1})


def test_plan_sorts_records_into_inserts_replaces_and_noops() -> None:
    same, changed, new = {"_id": 1, "v": "same"}, {"_id": 2, "v": "new"}, {"_id": 3, "v": "x"}
    known = {id_key(1): content_hash(same), id_key(2): content_hash({"_id": 2, "v": "old"})}
    plan = plan_batch([same, changed, new], known)
    assert [d["_id"] for d in plan.inserts] == [3]
    assert [d["_id"] for d in plan.replaces] == [2]
    assert plan.unchanged == 1
    assert plan.inserts[0][HASH_FIELD] == content_hash(new)
    assert known[id_key(3)] == content_hash(new)


def test_a_repeated_id_in_one_read_is_never_inserted_twice() -> None:
    plan = plan_batch([{"_id": 1, "v": 1}, {"_id": 1, "v": 2}, {"_id": 1, "v": 2}], {})
    assert len(plan.inserts) == 1
    assert len(plan.replaces) == 1
    assert plan.unchanged == 1


def test_record_without_id_is_a_source_error() -> None:
    with pytest.raises(SourceError):
        plan_batch([{"v": 1}], {})


def test_entity_status_follows_counts_and_errors() -> None:
    assert EntityResult("a").status == "unchanged"
    assert EntityResult("a", EntityStats(read=3, deleted=1)).status == "updated"
    failed = EntityResult("a", EntityStats(read=3, inserted=2, failed=1))
    assert failed.status == "failed"
    assert failed.detail()["error"]
    assert EntityResult("a", error="boom").detail() == {"entity": "a", "status": "failed", "error": "boom"}


def test_past_cursor_filter_breaks_ties_on_id() -> None:
    oid = ObjectId()
    at = datetime(2026, 1, 1, tzinfo=UTC)
    assert past_cursor_filter("updatedAt", at, oid) == {
        "$or": [{"updatedAt": {"$gt": at}}, {"updatedAt": at, "$expr": {"$gt": ["$_id", {"$literal": oid}]}}]
    }
    after_null = past_cursor_filter("updatedAt", None, oid)
    assert {"updatedAt": {"$ne": None}} in after_null["$or"]


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("7", now) == 7.0
    assert retry_after_seconds("Thu, 01 Jan 2026 12:00:30 GMT", now) == 30.0
    assert retry_after_seconds((now - timedelta(seconds=5)).strftime("%a, %d %b %Y %H:%M:%S GMT"), now) == 0.0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None


def test_dig_follows_dotted_paths() -> None:
    body = {"data": {"items": [{"id": 1}]}, "links": [{"next": "/p2"}]}
    assert dig(body, "data.items") == [{"id": 1}]
    assert dig(body, "links.0.next") == "/p2"
    assert dig(body, "data.missing.deeper") is None
    assert dig([1, 2], None) == [1, 2]


def test_link_header_next() -> None:
    header = '<https://x.test/a?page=2>; rel="next", <https://x.test/a?page=9>; rel="last"'
    assert _link_next({"Link": header}) == "https://x.test/a?page=2"
    assert _link_next({}) is None


def test_singer_ids_come_from_key_properties() -> None:
    assert singer_record({"id": 4, "v": 1}, ["id"], "s")["_id"] == 4
    assert singer_record({"a": 1, "b": 2, "v": 0}, ["a", "b"], "s")["_id"] == {"a": 1, "b": 2}
    keyless = singer_record({"v": 1}, [], "s")
    assert keyless["_id"] == singer_record({"v": 1}, [], "s")["_id"]
    with pytest.raises(SourceError, match="key property 'id'"):
        singer_record({"v": 1}, ["id"], "s")
