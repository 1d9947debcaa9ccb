"""Storage events: Qiniu and S3 notifications queue a bucket's videos after a settle delay.

One sandbox and app for the module; the settling is driven by an outbox runner
with an injected clock, so nothing here waits for the delay.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from service_support import AUTH, TOKEN, sandbox_settings, service_settings

from cdn_preheat.ledger.base import EventState
from cdn_preheat.ledger.sqlite import SqliteLedger
from cdn_preheat.sandbox.server import Sandbox
from cdn_preheat.service import ServiceEngine, create_app
from cdn_preheat.service.events import TOPIC, StoredObject, s3_objects, storage_topic
from cdn_preheat.service.webhooks import OutboxRunner

SETTLE = 60.0


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    with Sandbox(videos=4, segments=3, task_delay=0.1) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("events") / "ledger.sqlite3"


@pytest.fixture(scope="module")
def engine(box: Sandbox, db: Path) -> Iterator[ServiceEngine]:
    settings = sandbox_settings(
        box, db,
        cdn_preheat_events_origin=box.endpoints["origin"],
        cdn_preheat_events_settle_seconds=SETTLE,
    )  # fmt: skip
    engine = ServiceEngine(settings, service_settings())
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def client(engine: ServiceEngine) -> Iterator[TestClient]:
    with TestClient(create_app(engine)) as test_client:
        yield test_client


def qiniu_body(key: str, event: str = "put", digest: str = "FhWqsP2Lk36zuwGEFpPzXct12i-v") -> dict:
    """The callback's shape (developer.qiniu.com/kodo/8610): Message is a JSON string."""
    message = {
        "event": event,
        "time": 1547551207786351434,
        "reqid": "niNkZJy_3M9903AEA",
        "bucket": "sandbox-vod",
        "key": key,
        "fsize": 6,
        "hash": digest,
        "ftype": 0,
        "mimetype": "application/vnd.apple.mpegurl",
    }
    return {
        "Message": json.dumps(message),
        "Subject": "Qiniu KODO Notification",
        "Timestamp": "2019-01-15T19:20:07+08:00",
    }


def s3_record(
    key: str, name: str = "ObjectCreated:Put", version: str = "3HL4kqtJlcpXroDTDmJ"
) -> dict:
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventName": name,
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": "vod-bucket"},
            "object": {"key": key, "size": 120, "eTag": "0123456789abcdef", "versionId": version,
                       "sequencer": "0A1B2C3D4E5F678901"},
        },
    }  # fmt: skip


def settle(engine: ServiceEngine, seconds: float = SETTLE + 1) -> int:
    """Run the storage topic once, ``seconds`` from now (past the settle delay)."""
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    runner = OutboxRunner(engine.ledger, {TOPIC: storage_topic(engine)}, clock=lambda: later)
    return runner.run_once()


def test_a_qiniu_upload_queues_its_video_once_after_the_settle_delay(
    client: TestClient, engine: ServiceEngine
) -> None:
    body = qiniu_body("vod/demo-1/master.m3u8")
    before = dt.datetime.now(dt.UTC)
    first = client.post(f"/v1/events/qiniu?token={TOKEN}", json=body)  # no header: query token
    assert first.status_code == 202, first.text
    [accepted] = first.json()["accepted"]
    assert accepted["video_id"] == "vod/demo-1/master" and accepted["repeated"] is False
    due = dt.datetime.fromisoformat(accepted["due_at"])
    assert due >= before + dt.timedelta(seconds=SETTLE)
    again = client.post(f"/v1/events/qiniu?token={TOKEN}", json=body)  # the sender retried
    assert again.json()["accepted"][0]["event_id"] == accepted["event_id"]
    assert again.json()["accepted"][0]["repeated"] is True
    assert settle(engine, seconds=SETTLE / 2) == 0  # not settled yet: nothing queued
    assert engine.ledger.get_video("vod/demo-1/master") is None
    assert settle(engine) == 1
    video = engine.ledger.get_video("vod/demo-1/master")
    assert video is not None and video.url_count > 1
    assert engine.ledger.get_event(accepted["event_id"]).state is EventState.DELIVERED  # type: ignore[union-attr]
    assert settle(engine) == 0


def test_a_variant_playlist_is_not_a_video_but_its_master_is(
    client: TestClient, engine: ServiceEngine
) -> None:
    records = [s3_record("vod/demo-2/v0/index.m3u8"), s3_record("vod/demo-2/master.m3u8")]
    answer = client.post("/v1/events/s3", json={"Records": records}, headers=AUTH)
    assert answer.status_code == 202
    assert [a["video_id"] for a in answer.json()["accepted"]] == [
        "vod/demo-2/v0/index",
        "vod/demo-2/master",
    ]
    assert settle(engine) == 2  # both handled ...
    assert engine.ledger.get_video("vod/demo-2/master") is not None
    assert engine.ledger.get_video("vod/demo-2/v0/index") is None  # ... one is a video


def test_only_created_playlists_count_and_s3_keys_are_url_decoded(client: TestClient) -> None:
    records = [
        s3_record("vod/demo-3/master.m3u8", "ObjectRemoved:Delete"),
        s3_record("vod/demo-3/v0/seg0.ts"),
        s3_record("vod/my+film%C3%A9/master.m3u8", "s3:ObjectCreated:CompleteMultipartUpload"),
    ]
    answer = client.post("/v1/events/s3", json={"Records": records}, headers=AUTH)
    assert answer.status_code == 202
    body = answer.json()
    assert [a["key"] for a in body["accepted"]] == ["vod/my filmé/master.m3u8"]
    assert body["ignored"] == 1  # the segment; the deletion is no created object at all
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "vod-bucket"}
    answer = client.post("/v1/events/s3", json=test_event, headers=AUTH)
    assert answer.status_code == 200
    assert answer.json() == {"accepted": [], "refused": [], "ignored": 0}
    answer = client.post("/v1/events/qiniu", json=qiniu_body("vod/x.m3u8", "delete"), headers=AUTH)
    assert answer.status_code == 200 and answer.json()["accepted"] == []


def test_versions_of_one_key_are_separate_events() -> None:
    [one] = s3_objects({"Records": [s3_record("a/master.m3u8", version="v1")]})
    [two] = s3_objects({"Records": [s3_record("a/master.m3u8", version="v2")]})
    assert one.outbox_key != two.outbox_key
    assert one == StoredObject("s3", "vod-bucket", "a/master.m3u8", "v1")


@pytest.mark.parametrize("query", ["", "?token=wrong-token"])
def test_events_need_a_token(client: TestClient, query: str) -> None:
    answer = client.post(f"/v1/events/s3{query}", json={"Records": []})
    assert answer.status_code == 401


@pytest.mark.parametrize(
    ("route", "body", "sentence"),
    [
        ("qiniu", b"{not json", "the body is not valid JSON."),
        ("qiniu", b'{"Subject": "x"}', "a Qiniu event notification has a Message field; "
         "this body has none."),
        ("qiniu", b'{"Message": "[1]"}', "the notification's Message is not a JSON object."),
        ("s3", b'{"Records": [{"eventName": "ObjectCreated:Put"}]}',
         "record 1 has no s3.object.key."),
    ],
)  # fmt: skip
def test_bad_bodies_get_one_sentence_and_write_nothing(
    client: TestClient, engine: ServiceEngine, route: str, body: bytes, sentence: str
) -> None:
    before = len(engine.ledger.list_events(TOPIC, limit=1000))
    answer = client.post(f"/v1/events/{route}", content=body, headers=AUTH)
    assert answer.status_code == 422
    assert answer.json() == {"error": sentence}
    assert len(engine.ledger.list_events(TOPIC, limit=1000)) == before


def test_a_restart_neither_loses_nor_repeats(
    client: TestClient, engine: ServiceEngine, db: Path
) -> None:
    answer = client.post("/v1/events/qiniu", json=qiniu_body("vod/demo-4/master.m3u8"),
                         headers=AUTH)  # fmt: skip
    event_id = answer.json()["accepted"][0]["event_id"]
    # Another process on the same ledger (the service restarted) finds the notification.
    restarted = SqliteLedger(db)
    try:
        event = restarted.get_event(event_id)
        assert event is not None and event.state is EventState.PENDING
    finally:
        restarted.close()
    settle(engine)
    assert engine.ledger.get_event(event_id).state is EventState.DELIVERED  # type: ignore[union-attr]
    first = engine.ledger.get_video("vod/demo-4/master")
    assert first is not None
    # The sender repeats the notification after the restart: nothing is queued again.
    again = client.post("/v1/events/qiniu", json=qiniu_body("vod/demo-4/master.m3u8"),
                        headers=AUTH)  # fmt: skip
    assert again.json()["accepted"][0]["state"] == "delivered"
    assert again.json()["accepted"][0]["event_id"] == event_id
    settle(engine)
    assert engine.ledger.get_video("vod/demo-4/master") == first


def test_storage_events_need_the_origin_setting(tmp_path: Path) -> None:
    from cdn_preheat.config import load_settings

    settings = load_settings(cdn_preheat_db=str(tmp_path / "l.sqlite3"))
    engine = ServiceEngine(settings, service_settings())
    with TestClient(create_app(engine), headers=AUTH) as bare:
        answer = bare.post("/v1/events/s3", json={"Records": [s3_record("a/master.m3u8")]})
    engine.close()
    assert answer.status_code == 503
    assert "CDN_PREHEAT_EVENTS_ORIGIN" in answer.json()["error"]


def test_the_quota_probe_looks_at_the_providers_own_day(engine: ServiceEngine) -> None:
    from cdn_preheat.clock import quota_day
    from cdn_preheat.service.webhooks import quota_targets

    now = dt.datetime(2026, 12, 2, 17, 30, tzinfo=dt.UTC)  # 01:30 the next day in UTC+8
    assert quota_targets(engine)(now) == [("tencent", "mainland", quota_day(now, 8))]
    assert quota_day(now, 8) == "2026-12-03"


def test_a_key_the_api_would_refuse_as_a_video_id_is_not_queued(client: TestClient) -> None:
    long_key = "vod/" + "x" * 300 + "/master.m3u8"
    records = [s3_record(long_key), s3_record("vod/demo-3/master.m3u8", version="only-this")]
    answer = client.post("/v1/events/s3", json={"Records": records}, headers=AUTH)
    assert answer.status_code == 202
    body = answer.json()
    assert [a["key"] for a in body["accepted"]] == ["vod/demo-3/master.m3u8"]
    assert body["refused"] == [
        {"key": long_key, "error": "video_id is longer than 256 characters; not queued."}
    ]
