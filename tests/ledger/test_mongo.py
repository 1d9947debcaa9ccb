"""MongoDB-only behaviour: the old script's records, and unreachable servers."""

from __future__ import annotations

import datetime as dt
from typing import Any

import mongomock
import pytest
from pymongo.errors import AutoReconnect, NetworkTimeout

from cdn_preheat.config import Settings
from cdn_preheat.errors import ConfigError, LedgerError
from cdn_preheat.ledger import open_ledger
from cdn_preheat.ledger.base import QueuedUrl, VideoState
from cdn_preheat.ledger.mongo import MongoLedger, redact_uri
from cdn_preheat.ledger.sqlite import SqliteLedger

T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
OLD = {
    "video_id": "old-1",
    "m3u8_url": "https://o.example.com/old-1/index.m3u8",
    "ts_count": 812,
    "pushed_at": dt.datetime(2023, 11, 2, 8, 30),  # naive, as the old script wrote it
}


def test_a_video_the_old_script_pushed_counts_as_preheated(mongo_ledger: MongoLedger) -> None:
    mongo_ledger.legacy.insert_one(dict(OLD))

    video = mongo_ledger.get_video("old-1")

    assert video is not None
    assert video.state is VideoState.LEGACY
    assert (video.m3u8_url, video.url_count) == (OLD["m3u8_url"], 812)
    assert video.created_at == dt.datetime(2023, 11, 2, 8, 30, tzinfo=dt.UTC)
    assert [v.video_id for v in mongo_ledger.list_videos()] == ["old-1"]


def test_an_old_record_with_missing_fields_still_reads(mongo_ledger: MongoLedger) -> None:
    mongo_ledger.legacy.insert_one({"video_id": "old-2"})

    video = mongo_ledger.get_video("old-2")

    assert video is not None
    assert (video.state, video.url_count, video.m3u8_url) == (VideoState.LEGACY, 0, "")


def test_reset_deletes_the_old_scripts_records(mongo_ledger: MongoLedger) -> None:
    mongo_ledger.legacy.insert_many([dict(OLD), dict(OLD)])

    mongo_ledger.reset_video("old-1")

    assert mongo_ledger.get_video("old-1") is None
    assert mongo_ledger.legacy.count_documents({}) == 0


@pytest.mark.parametrize("state", [VideoState.SUBMITTED, VideoState.DONE])
def test_a_finished_video_is_written_in_the_old_shape(
    mongo_ledger: MongoLedger, state: VideoState
) -> None:
    mongo_ledger.put_video("v1", "https://o.example.com/v1.m3u8", 3, T0)
    mongo_ledger.set_video_state("v1", state, T0)

    (doc,) = mongo_ledger.legacy.find({}, {"_id": 0})

    assert set(doc) == {"video_id", "m3u8_url", "ts_count", "pushed_at"}
    assert (doc["video_id"], doc["m3u8_url"], doc["ts_count"]) == (
        "v1",
        "https://o.example.com/v1.m3u8",
        3,
    )
    assert isinstance(doc["pushed_at"], dt.datetime)
    assert mongo_ledger.get_video("v1").state is state  # type: ignore[union-attr]


def test_a_queued_video_is_not_written_in_the_old_shape(mongo_ledger: MongoLedger) -> None:
    mongo_ledger.put_video("v1", "https://o.example.com/v1.m3u8", 3, T0)
    mongo_ledger.set_video_state("v1", VideoState.QUEUED, T0)

    assert mongo_ledger.legacy.count_documents({}) == 0


def test_the_new_record_wins_over_the_old_one(mongo_ledger: MongoLedger) -> None:
    mongo_ledger.legacy.insert_one(dict(OLD))
    mongo_ledger.put_video("old-1", OLD["m3u8_url"], 900, T0)  # type: ignore[arg-type]

    video = mongo_ledger.get_video("old-1")

    assert video is not None and video.state is VideoState.QUEUED
    assert len(mongo_ledger.list_videos()) == 1


class CountingCollection:
    """Stands in for a collection and notes each operation (one round trip each)."""

    def __init__(self, target: Any, calls: list[str]) -> None:
        self._target = target
        self._calls = calls

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self._calls.append(name)
            return attr(*args, **kwargs)

        return counted


def test_enqueueing_a_video_costs_a_handful_of_round_trips_whatever_its_size(
    mongo_ledger: MongoLedger,
) -> None:
    # mongomock scans every document per upsert (no indexes), so keep it small;
    # the number of operations does not depend on the number of URLs.
    urls = [QueuedUrl(f"https://cdn.example.com/v/{i}.ts", "segment") for i in range(300)]
    mongo_ledger.enqueue("earlier", "p", "a", urls[:10], T0, dt.timedelta(days=1))
    calls: list[str] = []
    for name in ("urls", "links", "skipped", "counters"):
        setattr(mongo_ledger, name, CountingCollection(getattr(mongo_ledger, name), calls))

    result = mongo_ledger.enqueue("v", "p", "a", urls, T0, dt.timedelta(days=1))

    assert (result.queued, result.already_queued) == (290, 10)
    assert len(calls) <= 6, calls


def test_an_unreachable_server_never_shows_the_password() -> None:
    uri = "mongodb://preheat:S3cr3t-P4ss@127.0.0.1:1/cdn_preheat?authSource=admin"
    ledger = MongoLedger.from_uri(uri, timeout=0.05, retries=1, backoff=0.01)

    with pytest.raises(LedgerError) as caught:
        ledger.get_video("v1")

    message = str(caught.value)
    assert "S3cr3t-P4ss" not in message
    assert "127.0.0.1:1" in message
    assert "unreachable after 2 attempts" in message
    assert caught.value.__cause__ is None
    ledger.close()


def test_the_unreachable_sentence_keeps_its_parentheses_balanced() -> None:
    ledger = MongoLedger.from_uri("mongodb://127.0.0.1:1/cdn_preheat", timeout=0.05, retries=0)
    with pytest.raises(LedgerError) as caught:
        ledger.get_video("v1")
    ledger.close()
    message = str(caught.value)
    assert "Connection refused" in message
    assert "configured timeouts" not in message
    depth = 0
    for char in message:
        depth += {"(": 1, ")": -1}.get(char, 0)
        assert depth >= 0, message
    assert depth == 0, message


def test_a_malformed_uri_is_a_config_error_without_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        MongoLedger.from_uri("mongodb://preheat:S3cr3t@/?replicaSet=")

    assert "S3cr3t" not in str(caught.value)
    assert str(caught.value).startswith("MONGODB_URI is invalid: ")


def test_every_mongodb_operation_has_a_deadline() -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        mongodb_uri="mongodb://u:p@127.0.0.1:1",
        cdn_preheat_mongo_connect_timeout=2.5,
        cdn_preheat_mongo_socket_timeout=45,
    )
    ledger = open_ledger(settings, retries=0)
    assert isinstance(ledger, MongoLedger)
    options = ledger.client.options
    assert options.server_selection_timeout == 2.5
    assert options.pool_options.connect_timeout == 2.5
    assert options.pool_options.socket_timeout == 45
    assert ledger.retries == 0
    ledger.close()
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    assert defaults.cdn_preheat_mongo_connect_timeout == 3.0
    assert defaults.cdn_preheat_mongo_socket_timeout == 60.0


def test_redact_uri_keeps_only_scheme_and_hosts() -> None:
    uri = "mongodb+srv://u:p%40ss@cluster0.example.net/db?retryWrites=true"

    assert redact_uri(uri) == "mongodb+srv://cluster0.example.net"


def test_open_ledger_chooses_mongodb_when_a_uri_is_set(tmp_path: object) -> None:
    settings = Settings(_env_file=None, mongodb_uri="mongodb://u:p@127.0.0.1:1")  # type: ignore[call-arg]

    ledger = open_ledger(settings)

    assert isinstance(ledger, MongoLedger)
    ledger.close()


def test_open_ledger_defaults_to_sqlite(tmp_path: object) -> None:
    settings = Settings(_env_file=None, cdn_preheat_db=f"{tmp_path}/l.sqlite3")  # type: ignore[call-arg]

    ledger = open_ledger(settings)

    assert isinstance(ledger, SqliteLedger)
    ledger.close()


def test_a_stop_cuts_the_reconnect_backoff_short() -> None:
    from cdn_preheat import stopping

    uri = "mongodb://127.0.0.1:1/cdn_preheat"
    # An hour between attempts: only the stop lets this call end.
    ledger = MongoLedger.from_uri(uri, timeout=0.05, retries=3, backoff=3600)
    stopping.STOP.set()
    try:
        with pytest.raises(LedgerError) as caught:
            ledger.get_video("v1")
        assert "unreachable after 1 attempt " in str(caught.value)
    finally:
        stopping.STOP.clear()
        ledger.close()


class AnswerLost:
    """The quota collection, except that the next ``times`` reservations are applied
    and then their answer is lost (the connection dropped after the ``$inc``)."""

    def __init__(self, inner: Any, error: type[Exception], times: int = 1) -> None:
        self.inner, self.error, self.times = inner, error, times

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _lose(self, result: Any, reserves: bool) -> Any:
        if reserves and self.times:
            self.times -= 1
            raise self.error("connection closed after the write was sent")
        return result

    def update_one(self, where: Any, update: Any, *args: Any, **kwargs: Any) -> Any:
        result = self.inner.update_one(where, update, *args, **kwargs)
        reserves = isinstance(update, dict) and update.get("$inc", {}).get("inflight", 0) > 0
        return self._lose(result, reserves and result.modified_count == 1)

    def insert_one(self, doc: Any, *args: Any, **kwargs: Any) -> Any:
        result = self.inner.insert_one(doc, *args, **kwargs)
        return self._lose(result, doc.get("inflight", 0) > 0)


DAY = "2024-05-01"


@pytest.mark.parametrize("error", [AutoReconnect, NetworkTimeout])
@pytest.mark.parametrize("known_day", [True, False], ids=["update", "insert"])
def test_a_reservation_whose_answer_was_lost_is_counted_once(
    error: type[Exception], known_day: bool
) -> None:
    ledger = MongoLedger(mongomock.MongoClient(), retries=3, backoff=0)
    if known_day:
        ledger.sync_quota("tencent", "mainland", DAY, 100, 0)
    ledger.quota = AnswerLost(ledger.quota, error)  # type: ignore[assignment]

    granted = ledger.reserve_quota("tencent", "mainland", DAY, 30)

    book = ledger.quota_day("tencent", "mainland", DAY)
    assert ledger.quota.times == 0  # type: ignore[attr-defined]  # the answer was lost
    assert granted == 30
    assert book is not None and book.inflight == 30


@pytest.mark.parametrize("error", [AutoReconnect, NetworkTimeout])
def test_a_claim_whose_reservation_answer_was_lost_holds_only_its_urls(
    error: type[Exception],
) -> None:
    ledger = MongoLedger(mongomock.MongoClient(), retries=3, backoff=0)
    urls = [QueuedUrl(f"https://cdn.example.com/{n}.ts", "segment") for n in range(4)]
    ledger.enqueue("v1", "tencent", "mainland", urls, T0, dt.timedelta(days=3))
    ledger.sync_quota("tencent", "mainland", DAY, 100, 0)
    ledger.quota = AnswerLost(ledger.quota, error)  # type: ignore[assignment]

    claim, granted = ledger.claim_with_quota(
        "tencent", "mainland", DAY, 10, "w1", T0, dt.timedelta(minutes=2)
    )

    assert ledger.quota.times == 0  # type: ignore[attr-defined]
    assert claim is not None and (len(claim.urls), granted) == (4, 10)
    book = ledger.quota_day("tencent", "mainland", DAY)
    assert book is not None and (book.used, book.inflight) == (0, 4)


def test_a_claim_filtered_by_video_looks_up_its_urls_in_chunks(
    mongo_ledger: MongoLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large video never builds one huge ``$in``; the best URLs win across chunks."""
    from cdn_preheat.ledger import mongo

    monkeypatch.setattr(mongo, "VIDEO_CHUNK", 3)
    lease = dt.timedelta(minutes=2)
    urls = [f"https://cdn.example.com/v/s{i:02d}.ts" for i in range(10)]
    # The two urgent URLs come last, so they sit in the last chunk of links.
    items = [QueuedUrl(u, "segment", 0 if i >= 8 else 5) for i, u in enumerate(urls)]
    mongo_ledger.enqueue("v", "tencent", "mainland", items, T0, dt.timedelta(days=3))
    mongo_ledger.enqueue(
        "other", "tencent", "mainland", [QueuedUrl("https://cdn.example.com/o.ts", "segment", 0)],
        T0, dt.timedelta(days=3),
    )  # fmt: skip
    sizes: list[int] = []
    find = mongomock.collection.Collection.find

    def spying(self: Any, filter: Any = None, *args: Any, **kwargs: Any) -> Any:
        for value in (filter or {}).values():
            if isinstance(value, dict) and "$in" in value:
                sizes.append(len(value["$in"]))
        return find(self, filter, *args, **kwargs)

    monkeypatch.setattr(mongomock.collection.Collection, "find", spying)

    first = mongo_ledger.claim("tencent", "mainland", 3, "w", T0, lease, video_id="v")
    rest = mongo_ledger.claim("tencent", "mainland", 100, "w", T0, lease, video_id="v")

    assert first is not None and rest is not None
    assert first.urls == (urls[8], urls[9], urls[0])
    assert rest.urls == tuple(urls[1:8])
    assert sizes and max(sizes) <= 3
    assert mongo_ledger.claim("tencent", "mainland", 100, "w", T0, lease, video_id="v") is None
