"""The shared ledger: MongoDB, for workers on several machines.

Every change workers race on is one conditional write that a MongoDB server
applies atomically per document:

* a claim stamps candidate URLs with ``update_many({_id in ids, state:
  pending})`` and reads back what carries its own claim id, so a URL another
  worker took in between is simply not in the claim;
* a quota reservation is an ``$inc`` whose filter (``$expr``) says the
  reservation still fits; when it does not, it retries with what is left.
  The same update records a marker under a fresh id (``grants.<id>`` or
  ``holds.<id>`` in the day's document), so a retry after an unknown outcome
  (the connection dropped after the ``$inc`` was sent) finds the marker and
  returns what that attempt took instead of reserving again.

Two steps span several documents, and a standalone server (or mongomock) has
no multi-document transactions, so they use reservations that carry their own
lease, kept in the day's quota document and reclaimed atomically (an update
whose filter requires the hold to still exist applies once):

* ``claim_with_quota`` reserves quota as ``holds.<claim id>`` (lease: the
  claim's), stamps the URLs with that claim id, then removes the hold and
  gives back what was not claimed. Killed in between, the hold outlives its
  lease; :meth:`MongoLedger.expired_claims` then gives back the hold minus
  the URLs still reserved under that claim id (the claim's own lease returns
  those, as for any claim a dead worker left).
* ``settle_claim`` (and ``mark_submitted_settling``, its submitted-only form)
  writes a journal entry (``settle_journal``: the claim, and what becomes of
  its URLs: submitted under which task, invalid with which reason, released
  with which error), then a settle hold (``holds.<id>``: reserved and used),
  applies those changes to the URLs, settles the hold, and drops the entry.
  Killed after the hold was written, :meth:`MongoLedger.expired_claims` rolls
  the step forward from the journal once the claim's lease ran out: the
  worker's decision stands (the URLs reached the provider, were refused, or
  go back to the queue), and the hold is settled once. A journal entry
  without its hold (killed before the hold, or after the settle) is only
  dropped. While a claim has a journal entry, it is not listed as expired:
  recovering its URLs then would settle their share a second time.

A multi-document transaction would need a replica set; these work on any
server and on mongomock, which the contract suite runs against.

Enqueueing is one ``find`` to classify, then one ``bulk_write`` each for URLs
and links, whatever the size of the video.

The old script's ``preheated_videos`` documents (``{video_id, m3u8_url,
ts_count, pushed_at}``) stay readable (state LEGACY) and are written again for
finished videos, so a deployment can switch back to the old script.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import heapq
import re
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import wraps
from itertools import groupby, islice
from typing import Any, Concatenate, ParamSpec, TypeVar

import pymongo
from pymongo import ASCENDING, ReturnDocument, UpdateOne
from pymongo.collection import Collection
from pymongo.errors import (
    BulkWriteError,
    ConfigurationError,
    ConnectionFailure,
    DuplicateKeyError,
    PyMongoError,
)

from cdn_preheat import redact
from cdn_preheat.config import mongodb_secrets
from cdn_preheat.errors import ConfigError, LedgerError
from cdn_preheat.ledger.base import (
    Claim,
    EnqueueResult,
    EventState,
    Ledger,
    OutboxEvent,
    Outcome,
    PendingGroup,
    QueuedUrl,
    QuotaDay,
    TaskRecord,
    UrlRecord,
    UrlState,
    VideoRecord,
    VideoState,
)
from cdn_preheat.retrying import doubling, retry_call

Doc = dict[str, Any]

# ``exhaust_quota`` with an unknown limit: a figure no real quota reaches.
EXHAUSTED = 10**15

# Keeps each ``$in`` list well under the 16 MB document limit.
CHUNK = 10_000
# URLs per look-up when a claim goes through one video's links (see _candidates).
VIDEO_CHUNK = 1_000

CLOSED_TASK_TTL = dt.timedelta(days=30)

_ACTIVE = [UrlState.PENDING, UrlState.RESERVED, UrlState.SUBMITTED]
_CLAIM_FIELDS = {"claim_id": "", "worker": "", "claimed_at": "", "lease_until": ""}
_DUPLICATE_KEY = 11000

P = ParamSpec("P")
R = TypeVar("R")


def redact_uri(uri: str) -> str:
    """The URI's scheme and hosts only: no user, password, database or options."""
    # The userinfo runs to the *last* @: a password with an unescaped @ or / must
    # not spill into what is shown as the hosts.
    if "@" in uri:
        scheme, sep, rest = uri.partition("://")
        uri = f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else uri.rpartition("@")[2]
    match = re.match(r"^(?P<scheme>[a-z+]+://)?(?P<hosts>[^/?]*)", uri)
    if match is None:  # pragma: no cover - the pattern matches any string
        return "MongoDB"
    return f"{match['scheme'] or ''}{match['hosts']}"


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    """BSON dates come back naive (UTC) unless the client is tz_aware."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _moment(value: dt.datetime) -> dt.datetime:
    moment = _aware(value)
    assert moment is not None
    return moment


def _chunks(items: Iterable[str], size: int = CHUNK) -> Iterator[list[str]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _reconnecting(
    *, retry: bool = True
) -> Callable[[Callable[Concatenate[MongoLedger, P], R]], Callable[Concatenate[MongoLedger, P], R]]:
    """Retry dropped connections with backoff; every failure leaves as LedgerError.

    ``retry=False`` is for writes that are not idempotent: after a dropped
    connection we cannot know whether they were applied (pymongo's own
    retryable writes already cover the common case).
    """

    def decorate(
        method: Callable[Concatenate[MongoLedger, P], R],
    ) -> Callable[Concatenate[MongoLedger, P], R]:
        @wraps(method)
        def wrapper(self: MongoLedger, /, *args: P.args, **kwargs: P.kwargs) -> R:
            made = 0

            def attempt() -> R:
                nonlocal made
                made += 1
                self._ensure_indexes()
                return method(self, *args, **kwargs)

            try:
                # A tenacity policy: ``backoff`` doubling after each dropped connection,
                # cut short by the stop (``self.stop``, else stopping.STOP).
                return retry_call(
                    attempt,
                    attempts=self.retries + 1 if retry else 1,
                    retry_on=ConnectionFailure,
                    wait=doubling(self.backoff),
                    stop=self.stop,
                )
            except ConnectionFailure as exc:
                raise self._unreachable(exc, made) from None
            except PyMongoError as exc:
                raise self._failed(exc) from None

        return wrapper

    return decorate


class MongoLedger(Ledger):
    """The ledger in MongoDB (database ``cdn_preheat`` unless told otherwise)."""

    def __init__(
        self,
        client: pymongo.MongoClient[Doc],
        db_name: str = "cdn_preheat",
        *,
        where: str = "MongoDB",
        secrets: Sequence[str] = (),
        retries: int = 3,
        backoff: float = 0.5,
        stop: threading.Event | None = None,
    ) -> None:
        """``stop`` ends a reconnect backoff at once (None: :data:`stopping.STOP`)."""
        self.client = client
        self.stop = stop
        self.db = client[db_name]
        self.where = where
        self.retries = retries
        self.backoff = backoff
        self._secrets = [secret for secret in secrets if secret]
        self._indexed = False
        self.videos: Collection[Doc] = self.db["videos"]
        self.urls: Collection[Doc] = self.db["urls"]
        self.links: Collection[Doc] = self.db["video_urls"]
        self.skipped: Collection[Doc] = self.db["skipped_urls"]
        self.tasks: Collection[Doc] = self.db["tasks"]
        self.quota: Collection[Doc] = self.db["quota_days"]
        self.counters: Collection[Doc] = self.db["counters"]
        self.legacy: Collection[Doc] = self.db["preheated_videos"]
        self.workers: Collection[Doc] = self.db["rate_workers"]
        self.turns: Collection[Doc] = self.db["turns"]
        self.journal: Collection[Doc] = self.db["settle_journal"]
        self.outbox: Collection[Doc] = self.db["outbox"]

    @classmethod
    def from_uri(
        cls,
        uri: str,
        db_name: str = "cdn_preheat",
        *,
        timeout: float = 3.0,
        socket_timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.5,
        read_only: bool = False,
    ) -> MongoLedger:
        """Connect lazily to ``uri``; errors never repeat its password.

        Every operation has a deadline: ``timeout`` to find a server and to
        connect, ``socket_timeout`` for an answer (pymongo waits forever for
        one by default), so an unreachable or hung server fails a command
        within seconds (``retries`` more attempts, with backoff, for work that
        can wait). A URI pymongo cannot parse is a ConfigError (exit 2).
        """
        where = f"MongoDB at {redact_uri(uri)}"
        secrets = mongodb_secrets(uri)
        redact.register(*secrets)
        millis = int(timeout * 1000)
        try:
            client: pymongo.MongoClient[Doc] = pymongo.MongoClient(
                uri,
                serverSelectionTimeoutMS=millis,
                connectTimeoutMS=millis,
                socketTimeoutMS=int(socket_timeout * 1000),
                tz_aware=True,
            )
        except (ConfigurationError, ValueError) as exc:
            # InvalidURI, an unescaped @ or /, a bad port: the setting is wrong.
            message = _redacted(str(exc), secrets).rstrip(".")
            raise ConfigError(f"MONGODB_URI is invalid: {message}.") from None
        except PyMongoError as exc:
            message = _redacted(str(exc), secrets)
            raise LedgerError(f"{where} cannot be used: {message}") from None
        ledger = cls(
            client, db_name, where=where, secrets=secrets, retries=retries, backoff=backoff
        )
        # Looking only (status, quota): create no indexes, the one write of a reader.
        ledger._indexed = read_only
        return ledger

    def close(self) -> None:
        self.client.close()

    # Plumbing -------------------------------------------------------------
    def _unreachable(self, exc: ConnectionFailure, attempts: int) -> LedgerError:
        detail = _redacted(str(exc).split(",")[0], self._secrets)
        # PyMongo appends "(configured timeouts: ..., ...)"; cut at its first comma it
        # would leave the sentence's parenthesis unbalanced, and says nothing of use.
        detail = detail.split(" (configured timeouts:")[0]
        return LedgerError(
            f"{self.where} is unreachable after {attempts} attempt{'s' * (attempts != 1)}"
            f" ({type(exc).__name__}: "
            f"{detail}); check MONGODB_URI and that the server is running."
        )

    def _failed(self, exc: PyMongoError) -> LedgerError:
        detail = _redacted(str(exc), self._secrets)
        return LedgerError(f"{self.where} refused the operation: {detail}")

    def _ensure_indexes(self) -> None:
        """Create the indexes once per process; creating an existing one is a no-op."""
        if self._indexed:
            return
        pending = {"state": UrlState.PENDING.value}
        reserved = {"state": UrlState.RESERVED.value}
        submitted = {"state": UrlState.SUBMITTED.value}
        key = [("provider", ASCENDING), ("area", ASCENDING), ("url", ASCENDING)]
        self.urls.create_index(key, unique=True, name="url")
        # Partial indexes hold only the rows the query looks for, so the mass
        # of done URLs does not slow enqueueing.
        self.urls.create_index(
            [("provider", 1), ("area", 1), ("priority", 1), ("seq", 1)],
            partialFilterExpression=pending,
            name="claim",
        )
        self.urls.create_index(
            [("provider", 1), ("area", 1), ("lease_until", 1)],
            partialFilterExpression=reserved,
            name="lease",
        )
        self.urls.create_index(
            [("claim_id", 1)], partialFilterExpression={"claim_id": {"$exists": True}}, name="cid"
        )
        self.urls.create_index(
            [("provider", 1), ("task_id", 1)], partialFilterExpression=submitted, name="task"
        )
        self.urls.create_index([("state", 1), ("seq", 1)], name="state")
        self.links.create_index([("video_id", 1), *key], unique=True, name="link")
        self.links.create_index(key, name="url")
        self.skipped.create_index([("video_id", 1), *key], unique=True, name="link")
        self.tasks.create_index([("provider", 1), ("task_id", 1)], unique=True, name="task")
        self.tasks.create_index(
            [("provider", 1), ("area", 1), ("kind", 1), ("open", 1), ("created_at", 1)],
            name="open",
        )
        # Closed tasks are only history; MongoDB drops them after a while.
        self.tasks.create_index(
            [("closed_at", 1)],
            expireAfterSeconds=int(CLOSED_TASK_TTL.total_seconds()),
            name="closed_ttl",
        )
        self.quota.create_index([("provider", 1), ("area", 1), ("day", 1)], unique=True, name="day")
        self.legacy.create_index([("video_id", 1)], name="video_id")
        self.outbox.create_index([("event_id", 1)], unique=True, name="event_id")
        self.outbox.create_index(
            [("topic", 1), ("due_at", 1)],
            partialFilterExpression={"state": EventState.PENDING.value},
            name="due",
        )
        self.outbox.create_index([("topic", 1), ("created_at", -1)], name="recent")
        self._indexed = True

    # Videos ---------------------------------------------------------------
    @_reconnecting()
    def get_video(self, video_id: str) -> VideoRecord | None:
        doc = self.videos.find_one({"_id": video_id})
        if doc is not None:
            return _video(doc)
        old = self.legacy.find_one({"video_id": video_id}, sort=[("pushed_at", -1)])
        return None if old is None else _legacy_video(old)

    @_reconnecting()
    def put_video(self, video_id: str, m3u8_url: str, url_count: int, now: dt.datetime) -> None:
        self.videos.update_one(
            {"_id": video_id},
            {
                "$set": {
                    "m3u8_url": m3u8_url,
                    "url_count": url_count,
                    "state": VideoState.QUEUED.value,
                    "updated_at": now,
                },
                "$setOnInsert": {"created_at": now},
            },
            upsert=True,
        )

    @_reconnecting()
    def set_video_state(self, video_id: str, state: VideoState, now: dt.datetime) -> None:
        doc = self.videos.find_one_and_update(
            {"_id": video_id},
            {"$set": {"state": state.value, "updated_at": now}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is not None and state in (VideoState.SUBMITTED, VideoState.DONE):
            # Exactly the old script's shape, so it would skip this video too.
            self.legacy.update_one(
                {"video_id": video_id},
                {
                    "$set": {
                        "m3u8_url": doc["m3u8_url"],
                        "ts_count": doc["url_count"],
                        "pushed_at": now,
                    }
                },
                upsert=True,
            )

    @_reconnecting()
    def reset_video(self, video_id: str) -> int:
        """Forget the video, its URLs and the old script's records of it.

        A URL shared with another video is forgotten for both (it is the same
        push), as on SQLite.
        """
        by_target: dict[tuple[str, str], list[str]] = defaultdict(list)
        for link in self.links.find({"video_id": video_id}, {"provider": 1, "area": 1, "url": 1}):
            by_target[link["provider"], link["area"]].append(link["url"])
        for (provider, area), urls in by_target.items():
            for chunk in _chunks(urls):
                where = {"provider": provider, "area": area, "url": {"$in": chunk}}
                self.urls.delete_many(where)
                self.links.delete_many(where)
        skipped = self.skipped.delete_many({"video_id": video_id}).deleted_count
        self.videos.delete_one({"_id": video_id})
        self.legacy.delete_many({"video_id": video_id})
        return sum(len(urls) for urls in by_target.values()) + skipped

    @_reconnecting()
    def cancel_video(self, video_id: str, reason: str = "cancelled") -> int:
        pending = {"$in": [UrlState.PENDING.value]}
        cancelled = 0
        for doc in list(self._video_url_docs(video_id, pending)):
            where = {"provider": doc["provider"], "area": doc["area"], "url": doc["url"]}
            if self.links.find_one({**where, "video_id": {"$ne": video_id}}, {"_id": 1}):
                continue  # another video still wants it
            # Conditional on still pending: a worker may claim it meanwhile.
            if self.urls.delete_one({**where, "state": UrlState.PENDING.value}).deleted_count:
                self.links.delete_many({**where, "video_id": video_id})
                self.skipped.update_one(
                    {"video_id": video_id, **where}, {"$set": {"reason": reason}}, upsert=True
                )
                cancelled += 1
        return cancelled

    @_reconnecting()
    def list_videos(self) -> list[VideoRecord]:
        videos = [_video(doc) for doc in self.videos.find()]
        known = {video.video_id for video in videos}
        for old in self.legacy.find({"video_id": {"$nin": list(known)}}):
            if old["video_id"] not in known:
                known.add(old["video_id"])
                videos.append(_legacy_video(old))
        return sorted(videos, key=lambda video: (video.created_at, video.video_id))

    # URLs -----------------------------------------------------------------
    @_reconnecting()
    def enqueue(
        self,
        video_id: str,
        provider: str,
        area: str,
        urls: Iterable[QueuedUrl],
        now: dt.datetime,
        max_age: dt.timedelta,
    ) -> EnqueueResult:
        """Link the URLs to the video; queue those never pushed, expired or failed.

        Same rules as SQLite: a done URL has expired when ``expires_at`` passed
        or it was pushed more than ``max_age`` ago; failed and invalid URLs
        are queued again with their attempts reset.
        """
        unique = {item.url: item for item in urls}
        target = {"provider": provider, "area": area}
        fields = {"url": 1, "state": 1, "expires_at": 1, "pushed_at": 1}
        seq = self._take_seq(len(unique))
        queued = done = in_queue = 0
        # Chunk by chunk, so a 200,000-URL video never holds an operation per URL.
        for chunk in _chunks(unique):
            known = {
                row["url"]: row for row in self.urls.find({**target, "url": {"$in": chunk}}, fields)
            }
            ops: list[UpdateOne] = []
            for url in chunk:
                doc = known.get(url)
                if doc is not None and doc["state"] in _ACTIVE:
                    in_queue += 1
                elif (
                    doc is not None
                    and doc["state"] == UrlState.DONE
                    and not _expired(doc, now, max_age)
                ):
                    done += 1
                else:
                    ops.append(_queue_update(target, unique[url], seq, doc))
                    queued += 1
                seq += 1
            _bulk(self.urls, ops)
            _bulk(self.links, [_link(video_id, provider, area, url) for url in chunk])
        if self.skipped.find_one({"video_id": video_id, **target}, {"_id": 1}) is not None:
            for chunk in _chunks(unique):
                self.skipped.delete_many({"video_id": video_id, **target, "url": {"$in": chunk}})
        return EnqueueResult(queued=queued, already_done=done, already_queued=in_queue, skipped=0)

    def _take_seq(self, count: int) -> int:
        """Reserve ``count`` queue positions; the first one."""
        doc = self.counters.find_one_and_update(
            {"_id": "seq"},
            {"$inc": {"value": count}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert doc is not None  # an upsert returning the document after it
        return int(doc["value"]) - count

    @_reconnecting()
    def mark_skipped(
        self, video_id: str, provider: str, area: str, reasons: Mapping[str, str]
    ) -> None:
        _bulk(
            self.skipped,
            [
                UpdateOne(
                    {"video_id": video_id, "provider": provider, "area": area, "url": url},
                    {"$set": {"reason": reason}},
                    upsert=True,
                )
                for url, reason in reasons.items()
            ],
        )

    def claim(
        self,
        provider: str,
        area: str,
        limit: int,
        worker: str,
        now: dt.datetime,
        lease: dt.timedelta,
        *,
        video_id: str | None = None,
    ) -> Claim | None:
        return self._claim_as(
            uuid.uuid4().hex, provider, area, limit, worker, now, now + lease, video_id
        )

    def claim_with_quota(
        self,
        provider: str,
        area: str,
        day: str,
        limit: int,
        worker: str,
        now: dt.datetime,
        lease: dt.timedelta,
        *,
        video_id: str | None = None,
    ) -> tuple[Claim | None, int]:
        """A hold with the claim's lease, the claim, then the hold trimmed into the claim.

        Killed before the hold is trimmed, the hold expires with the lease and
        :meth:`expired_claims` gives back what no URL carries (see the module).
        """
        key = {"provider": provider, "area": area, "day": day}
        claim_id = uuid.uuid4().hex
        lease_until = now + lease
        granted = self._hold(key, claim_id, limit, lease_until)
        if granted == 0:
            return None, 0
        claim = self._claim_as(
            claim_id, provider, area, granted, worker, now, lease_until, video_id
        )
        taken = len(claim.urls) if claim is not None else 0
        self._unhold(key, claim_id, granted - taken)
        return claim, granted

    @_reconnecting()
    def _claim_as(
        self,
        claim_id: str,
        provider: str,
        area: str,
        limit: int,
        worker: str,
        now: dt.datetime,
        lease_until: dt.datetime,
        video_id: str | None = None,
    ) -> Claim | None:
        """Stamp up to ``limit`` pending URLs with ``claim_id``; a retry stamps no more.

        ``video_id``: only URLs linked to that video.
        """
        stamp = {
            "state": UrlState.RESERVED.value,
            "claim_id": claim_id,
            "worker": worker,
            "claimed_at": now,
            "lease_until": lease_until,
        }
        where = {"provider": provider, "area": area, "state": UrlState.PENDING.value}
        order = [("priority", ASCENDING), ("seq", ASCENDING)]
        # A retried call counts what the lost attempt already stamped.
        taken = self.urls.count_documents({"claim_id": claim_id, "state": stamp["state"]})
        # Another worker may stamp some candidates first; look again a few times.
        for _ in range(5):
            ids = self._candidates(where, limit - taken, video_id)
            if not ids or taken >= limit:
                break
            for chunk in _chunks(ids, VIDEO_CHUNK):
                taken += self.urls.update_many(
                    {**where, "_id": {"$in": chunk}}, {"$set": stamp}
                ).modified_count
            if taken >= limit:
                break
        urls = tuple(
            doc["url"] for doc in self.urls.find({"claim_id": claim_id}, {"url": 1}).sort(order)
        )
        if not urls:
            return None
        return Claim(claim_id, provider, area, urls, worker, now, lease_until)

    def _candidates(self, where: Doc, n: int, video_id: str | None) -> list[Any]:
        """The ids of the best ``n`` URLs matching ``where`` (of ``video_id`` only, if set).

        A video's URLs are looked up through its links ``VIDEO_CHUNK`` at a
        time, so that a video of 200,000 URLs never builds one huge ``$in``
        document; the best ``n`` of every chunk compete for the claim.
        """
        order = [("priority", ASCENDING), ("seq", ASCENDING)]
        if n <= 0:
            return []
        if video_id is None:
            return [doc["_id"] for doc in self.urls.find(where, {"_id": 1}).sort(order).limit(n)]
        links = self.links.find(
            {"video_id": video_id, "provider": where["provider"], "area": where["area"]},
            {"_id": 0, "url": 1},
        ).batch_size(VIDEO_CHUNK)
        best: list[Doc] = []
        for chunk in _chunks((link["url"] for link in links), VIDEO_CHUNK):
            found = self.urls.find(
                {**where, "url": {"$in": chunk}}, {"_id": 1, "priority": 1, "seq": 1}
            )
            best = heapq.nsmallest(
                n, [*best, *found.sort(order).limit(n)], key=lambda d: (d["priority"], d["seq"])
            )
        return [doc["_id"] for doc in best]

    @_reconnecting()
    def mark_submitted(
        self, claim: Claim, task_id: str, urls: Sequence[str], now: dt.datetime
    ) -> None:
        moved = 0
        for chunk in _chunks(urls):
            moved += self.urls.update_many(
                _claimed(claim, chunk),
                {
                    "$set": {
                        "state": UrlState.SUBMITTED.value,
                        "task_id": task_id,
                        "pushed_at": now,
                    },
                    "$unset": _CLAIM_FIELDS,
                },
            ).modified_count
        self._insert_task(task_id, claim.provider, claim.area, "push", len(urls), now)
        if moved:
            # URLs newly under a task closed already (an id another batch's answer
            # recorded, its URLs since finished: Alibaba's merged PushTaskId): it is
            # followed again, as the SQLite ledger does.
            self.tasks.update_one(
                {"provider": claim.provider, "task_id": task_id, "open": False},
                {"$set": {"open": True}, "$unset": {"closed_at": ""}},
            )

    def mark_submitted_settling(
        self,
        claim: Claim,
        task_id: str,
        urls: Sequence[str],
        now: dt.datetime,
        day: str,
        reserved: int,
    ) -> None:
        """``settle_claim`` with the URLs submitted (see the module)."""
        self.settle_claim(claim, now, day, reserved, len(urls), submitted={task_id: urls})

    def settle_claim(
        self,
        claim: Claim,
        now: dt.datetime,
        day: str | None,
        reserved: int,
        used: int,
        *,
        submitted: Mapping[str, Sequence[str]] | None = None,
        invalid: Mapping[str, str] | None = None,
        released: Sequence[str] = (),
        error: str | None = None,
        count_attempt: bool = False,
    ) -> None:
        """A journal entry, a settle hold, the URLs' end, then the hold settled.

        Killed after the hold was written, :meth:`expired_claims` finishes the
        step from the journal once the claim's lease ran out (see the module).
        """
        end = _ClaimEnd(
            [(task_id, list(urls)) for task_id, urls in (submitted or {}).items()],
            dict(invalid or {}),
            list(released),
            error,
            count_attempt,
        )
        if day is None:  # nothing to settle: each step is safe to repeat or leave
            self._apply_end(claim, end, now)
            return
        key = {"provider": claim.provider, "area": claim.area, "day": day}
        hold_id = uuid.uuid4().hex
        # A lease from now: the claim's may have been renewed since ``claim`` was read.
        until = max(claim.lease_until, now + (claim.lease_until - claim.claimed_at))
        self._journal(hold_id, key, claim, end, now, until)
        self._hold_settle(key, hold_id, reserved, used, until)
        self._apply_end(claim, end, now)
        self._settle_hold(key, hold_id, reserved, used)
        self._forget(hold_id)

    def _apply_end(self, claim: Claim, end: _ClaimEnd, now: dt.datetime) -> None:
        """The URLs' part of :meth:`settle_claim`; each write applies once, however often made."""
        for task_id, urls in end.submitted:
            self.mark_submitted(claim, task_id, urls, now)
        if end.invalid:
            self.mark_invalid(claim.provider, claim.area, end.invalid, now)
        if end.released:
            self.release(claim, end.released, end.error, count_attempt=end.count_attempt)

    @_reconnecting()
    def _journal(
        self,
        hold_id: str,
        key: Doc,
        claim: Claim,
        end: _ClaimEnd,
        now: dt.datetime,
        until: dt.datetime,
    ) -> None:
        self.journal.replace_one(
            {"_id": hold_id},
            {
                **key,
                "claim_id": claim.claim_id,
                "worker": claim.worker,
                "claimed_at": claim.claimed_at,
                "lease_until": claim.lease_until,
                # Lists, not maps: URLs and task ids may hold dots.
                "submitted": [{"task_id": t, "urls": urls} for t, urls in end.submitted],
                "invalid": [{"url": u, "reason": why} for u, why in end.invalid.items()],
                "released": end.released,
                "error": end.error,
                "count_attempt": end.count_attempt,
                "at": now,
                "until": until,
            },
            upsert=True,
        )

    @_reconnecting()
    def _hold_settle(
        self, key: Doc, hold_id: str, reserved: int, used: int, until: dt.datetime
    ) -> None:
        hold = {"n": reserved, "used": used, "until": until, "settle": True}
        self.quota.update_one(key, {"$set": {f"holds.{hold_id}": hold}}, upsert=True)

    @_reconnecting()
    def _settle_hold(self, key: Doc, hold_id: str, reserved: int, used: int) -> None:
        """Settle a settle hold once: its filter no longer matches after it applied."""
        self.quota.update_one(
            {**key, f"holds.{hold_id}": {"$exists": True}},
            {
                "$unset": {f"holds.{hold_id}": ""},
                "$inc": {"inflight": -reserved, "used": used, "settles": 1},
            },
        )

    @_reconnecting()
    def _forget(self, hold_id: str) -> None:
        self.journal.delete_one({"_id": hold_id})

    @_reconnecting()
    def release(
        self, claim: Claim, urls: Sequence[str], error: str | None, *, count_attempt: bool
    ) -> None:
        update: Doc = {
            "$set": {"state": UrlState.PENDING.value},
            "$unset": _CLAIM_FIELDS,
            "$inc": {"attempts": int(count_attempt)},
        }
        if error is not None:
            update["$set"]["last_error"] = error
        for chunk in _chunks(urls):
            self.urls.update_many(_claimed(claim, chunk), update)

    @_reconnecting()
    def mark_invalid(
        self, provider: str, area: str, reasons: Mapping[str, str], now: dt.datetime
    ) -> None:
        target = {"provider": provider, "area": area, "state": {"$in": _ACTIVE}}
        tasks = set()
        for chunk in _chunks(reasons):
            for doc in self.urls.find({**target, "url": {"$in": chunk}}, {"task_id": 1}):
                if doc.get("task_id"):
                    tasks.add(doc["task_id"])
        _bulk(
            self.urls,
            [
                UpdateOne(
                    {**target, "url": url},
                    {
                        "$set": {"state": UrlState.INVALID.value, "last_error": reason},
                        "$unset": _CLAIM_FIELDS,
                    },
                )
                for url, reason in reasons.items()
            ],
        )
        self._close_finished_tasks(provider, tasks, now)

    @_reconnecting()
    def requeue(self, provider: str, area: str, urls: Sequence[str]) -> int:
        unique = list(dict.fromkeys(urls))
        if not unique:
            return 0
        first_seq = self._take_seq(len(unique))
        moved = 0
        finished = [UrlState.DONE.value, UrlState.FAILED.value, UrlState.INVALID.value]
        for seq, url in enumerate(unique, start=first_seq):
            result = self.urls.update_one(
                {"provider": provider, "area": area, "url": url, "state": {"$in": finished}},
                {
                    "$set": {"state": UrlState.PENDING.value, "seq": seq, "attempts": 0},
                    "$unset": {"last_error": "", "task_id": "", "expires_at": ""},
                },
            )
            moved += result.modified_count
        return moved

    @_reconnecting()
    def record_outcomes(
        self,
        provider: str,
        area: str,
        outcomes: Sequence[Outcome],
        now: dt.datetime,
        max_age: dt.timedelta,
        max_attempts: int,
    ) -> None:
        """Apply task results to URLs still submitted under that task (see SQLite)."""
        ops: list[UpdateOne] = []
        for outcome in outcomes:
            where = {
                "provider": provider,
                "area": area,
                "url": outcome.url,
                "task_id": outcome.task_id,
                "state": UrlState.SUBMITTED.value,
            }
            ops.extend(_outcome_updates(outcome, where, now + max_age, max_attempts))
        # Ordered: of the two conditional FAILED updates at most one matches.
        _bulk(self.urls, ops, ordered=True)
        self._close_finished_tasks(provider, {outcome.task_id for outcome in outcomes}, now)

    @_reconnecting()
    def renew_lease(
        self, claim: Claim, now: dt.datetime, lease: dt.timedelta, *, worker: str | None = None
    ) -> Claim | None:
        lease_until = now + lease
        owner = worker or claim.worker
        where: Doc = {
            "provider": claim.provider,
            "area": claim.area,
            "claim_id": claim.claim_id,
            "worker": claim.worker,
            "state": UrlState.RESERVED.value,
        }
        if worker is not None:
            where["lease_until"] = {"$lte": now}
        # Each document's update is atomic: of two workers taking over one claim,
        # each URL goes to one of them (stamped with its worker id and this lease).
        self.urls.update_many(where, {"$set": {"worker": owner, "lease_until": lease_until}})
        order = [("priority", ASCENDING), ("seq", ASCENDING)]
        won = {**where, "worker": owner, "lease_until": lease_until}
        urls = tuple(doc["url"] for doc in self.urls.find(won, {"url": 1}).sort(order))
        if not urls:
            return None
        return dataclasses.replace(claim, urls=urls, worker=owner, lease_until=lease_until)

    def expired_claims(self, provider: str, area: str, now: dt.datetime) -> list[Claim]:
        """Finish or give back the holds of dead workers first, then list the claims."""
        self._recover_holds(provider, area, now)
        settling = self._settling_claims(provider, area)
        return [
            claim
            for claim in self._expired_claims(provider, area, now)
            if claim.claim_id not in settling
        ]

    @_reconnecting()
    def _recover_holds(self, provider: str, area: str, now: dt.datetime) -> None:
        days = self.quota.find(
            {"provider": provider, "area": area, "holds": {"$exists": True}},
            {"day": 1, "holds": 1},
        )
        for doc in list(days):
            key = {"provider": provider, "area": area, "day": doc["day"]}
            for hold_id, hold in (doc.get("holds") or {}).items():
                if _moment(hold["until"]) > now:
                    continue  # its worker may still be at work
                if hold.get("settle"):
                    self._finish_settle(key, hold_id, hold)
                else:
                    # Killed between reserving and trimming: the claim's URLs keep
                    # their share (their lease gives it back); the rest comes back now.
                    stamped = self.urls.count_documents(
                        {"claim_id": hold_id, "state": UrlState.RESERVED.value}
                    )
                    self._unhold(key, hold_id, max(0, hold["n"] - stamped))
        # A journal entry without its hold: killed before the hold (the claim's lease
        # covers its URLs) or after the settle. Either way nothing is left to do.
        for entry in list(
            self.journal.find({"provider": provider, "area": area, "until": {"$lte": now}})
        ):
            held = self.quota.find_one(
                {
                    "provider": provider,
                    "area": area,
                    "day": entry["day"],
                    f"holds.{entry['_id']}": {"$exists": True},
                }
            )
            if held is None:
                self.journal.delete_one({"_id": entry["_id"]})

    def _finish_settle(self, key: Doc, hold_id: str, hold: Doc) -> None:
        """Roll a dead worker's settle forward: what it decided for its URLs stands."""
        entry = self.journal.find_one({"_id": hold_id})
        if entry is None:  # pragma: no cover - the journal is written before the hold
            self._settle_hold(key, hold_id, hold["n"], hold["used"])
            return
        claim = Claim(
            entry["claim_id"],
            key["provider"],
            key["area"],
            (),
            entry["worker"],
            _moment(entry["claimed_at"]),
            _moment(entry["lease_until"]),
        )
        end = _ClaimEnd.from_journal(entry)
        self._apply_end(claim, end, _moment(entry["at"]))
        # Only what left the claim: URLs of the piece that the step did not name
        # are still reserved under the claim, whose lease gives their share back.
        settled = min(int(hold["n"]), end.count())
        self._settle_hold(key, hold_id, settled, min(int(hold["used"]), settled))
        self._forget(hold_id)

    def _settling_claims(self, provider: str, area: str) -> set[str]:
        """Claims with a settle still in its lease: their URLs are not for recovery yet."""
        entries = self.journal.find({"provider": provider, "area": area}, {"claim_id": 1})
        return {entry["claim_id"] for entry in entries}

    @_reconnecting()
    def _expired_claims(self, provider: str, area: str, now: dt.datetime) -> list[Claim]:
        docs = self.urls.find(
            {
                "provider": provider,
                "area": area,
                "state": UrlState.RESERVED.value,
                "lease_until": {"$lte": now},
            },
            {"url": 1, "claim_id": 1, "worker": 1, "claimed_at": 1, "lease_until": 1},
        ).sort([("claimed_at", 1), ("claim_id", 1), ("priority", 1), ("seq", 1)])
        claims = []
        for claim_id, group in groupby(docs, key=lambda doc: doc["claim_id"]):
            rows = list(group)
            first = rows[0]
            claims.append(
                Claim(
                    claim_id,
                    provider,
                    area,
                    tuple(row["url"] for row in rows),
                    first["worker"],
                    _moment(first["claimed_at"]),
                    _moment(first["lease_until"]),
                )
            )
        return claims

    @_reconnecting()
    def record_task(
        self, task_id: str, provider: str, area: str, kind: str, url_count: int, now: dt.datetime
    ) -> None:
        self._insert_task(task_id, provider, area, kind, url_count, now)

    def _insert_task(
        self, task_id: str, provider: str, area: str, kind: str, url_count: int, now: dt.datetime
    ) -> None:
        # Recorded once: a repeated call (a retried reconciliation) changes nothing.
        self.tasks.update_one(
            {"provider": provider, "task_id": task_id},
            {
                "$setOnInsert": {
                    "area": area,
                    "kind": kind,
                    "url_count": url_count,
                    "created_at": now,
                    "open": True,
                }
            },
            upsert=True,
        )

    @_reconnecting()
    def known_tasks(self, provider: str, task_ids: Iterable[str]) -> set[str]:
        wanted = list(task_ids)
        return {
            str(task_id)
            for chunk in _chunks(wanted)
            for task_id in self.tasks.distinct(
                "task_id", {"provider": provider, "task_id": {"$in": chunk}}
            )
        }

    @_reconnecting()
    def earlier_pushes(self, provider: str, area: str, found: Mapping[str, str]) -> set[str]:
        recorded: dict[str, dt.datetime] = {}
        for chunk in _chunks(sorted(set(found.values()))):
            query = {"provider": provider, "task_id": {"$in": chunk}}
            for doc in self.tasks.find(query, {"task_id": 1, "created_at": 1}):
                if (created := _aware(doc.get("created_at"))) is not None:
                    recorded[str(doc["task_id"])] = created
        earlier = set()
        wanted = [url for url, task_id in found.items() if task_id in recorded]
        for chunk in _chunks(wanted):
            query = {"provider": provider, "area": area, "url": {"$in": chunk}}
            for doc in self.urls.find(query, {"url": 1, "pushed_at": 1}):
                pushed = _aware(doc.get("pushed_at"))
                url = str(doc["url"])
                if pushed is not None and pushed >= recorded[found[url]]:
                    earlier.add(url)
        return earlier

    @_reconnecting()
    def close_task(self, task_id: str, provider: str) -> None:
        self.tasks.update_one(
            {"provider": provider, "task_id": task_id, "open": True},
            {"$set": {"open": False, "closed_at": dt.datetime.now(dt.UTC)}},
        )

    def _close_finished_tasks(self, provider: str, task_ids: set[str], now: dt.datetime) -> None:
        if not task_ids:
            return
        busy = set(
            self.urls.distinct(
                "task_id",
                {
                    "provider": provider,
                    "task_id": {"$in": list(task_ids)},
                    "state": UrlState.SUBMITTED.value,
                },
            )
        )
        if finished := task_ids - busy:
            self.tasks.update_many(
                {"provider": provider, "task_id": {"$in": list(finished)}, "open": True},
                {"$set": {"open": False, "closed_at": now}},
            )

    @_reconnecting()
    def open_tasks(self, provider: str, area: str, kind: str = "push") -> list[TaskRecord]:
        docs = self.tasks.find(
            {"provider": provider, "area": area, "kind": kind, "open": True}
        ).sort([("created_at", 1), ("_id", 1)])
        return [
            TaskRecord(
                doc["task_id"],
                doc["provider"],
                doc["area"],
                doc["kind"],
                doc["url_count"],
                _moment(doc["created_at"]),
                True,
            )
            for doc in docs
        ]

    @_reconnecting()
    def abandon_task(self, provider: str, task_id: str, reason: str) -> int:
        result = self.urls.update_many(
            {"provider": provider, "task_id": task_id, "state": UrlState.SUBMITTED.value},
            {
                "$set": {"state": UrlState.PENDING.value, "last_error": reason},
                "$unset": {"task_id": ""},
            },
        )
        self.close_task(task_id, provider)
        return int(result.modified_count)

    @_reconnecting()
    def submitted_urls(self, provider: str, task_ids: Iterable[str]) -> dict[str, list[str]]:
        docs = self.urls.find(
            {
                "provider": provider,
                "task_id": {"$in": sorted(set(task_ids))},
                "state": UrlState.SUBMITTED.value,
            },
            {"task_id": 1, "url": 1},
        ).sort("seq", 1)
        found: dict[str, list[str]] = {}
        for doc in docs:
            found.setdefault(doc["task_id"], []).append(doc["url"])
        return found

    @_reconnecting()
    def done_urls(
        self,
        provider: str,
        area: str,
        urls: Iterable[str],
        now: dt.datetime,
        max_age: dt.timedelta,
    ) -> set[str]:
        target = {"provider": provider, "area": area, "state": UrlState.DONE.value}
        fields = {"url": 1, "expires_at": 1, "pushed_at": 1}
        found: set[str] = set()
        for chunk in _chunks(dict.fromkeys(urls)):
            for doc in self.urls.find({**target, "url": {"$in": chunk}}, fields):
                if not _expired(doc, now, max_age):
                    found.add(doc["url"])
        return found

    @_reconnecting()
    def url_records(self, video_id: str) -> list[UrlRecord]:
        """The video's URLs in queue order, then its skipped URLs."""
        docs = sorted(self._video_url_docs(video_id), key=lambda doc: doc["seq"])
        skipped = self.skipped.find({"video_id": video_id}).sort("_id", 1)
        return [_url_record(doc) for doc in docs] + [
            UrlRecord(
                doc["url"],
                doc["provider"],
                doc["area"],
                "",
                UrlState.SKIPPED,
                None,
                0,
                doc["reason"],
                None,
                None,
            )
            for doc in skipped
        ]

    def _video_url_docs(
        self, video_id: str, state: Doc | None = None, target: tuple[str, str] | None = None
    ) -> Iterator[Doc]:
        by_target: dict[tuple[str, str], list[str]] = defaultdict(list)
        linked: Doc = {"video_id": video_id}
        if target is not None:
            linked |= {"provider": target[0], "area": target[1]}  # the "link" index's prefix
        for link in self.links.find(linked, {"provider": 1, "area": 1, "url": 1}):
            by_target[link["provider"], link["area"]].append(link["url"])
        for (provider, area), urls in by_target.items():
            for chunk in _chunks(urls):
                where: Doc = {"provider": provider, "area": area, "url": {"$in": chunk}}
                if state is not None:
                    where["state"] = state
                yield from self.urls.find(where)

    @_reconnecting()
    def counts(
        self, video_id: str | None = None, *, target: tuple[str, str] | None = None
    ) -> dict[UrlState, int]:
        result: dict[UrlState, int] = defaultdict(int)
        # A target matches the prefix of the unique (provider, area, url) index.
        mine: Doc = {} if target is None else {"provider": target[0], "area": target[1]}
        if video_id is None:
            for row in self.urls.aggregate(
                [{"$match": mine}, {"$group": {"_id": "$state", "n": {"$sum": 1}}}]
            ):
                result[UrlState(row["_id"])] = row["n"]
            skipped = self.skipped.count_documents(mine)
        else:
            for doc in self._video_url_docs(video_id, target=target):
                result[UrlState(doc["state"])] += 1
            skipped = self.skipped.count_documents({"video_id": video_id, **mine})
        if skipped:
            result[UrlState.SKIPPED] = skipped
        return dict(result)

    @_reconnecting()
    def has_pending(self, provider: str, area: str, video_id: str | None = None) -> bool:
        pending = {"provider": provider, "area": area, "state": UrlState.PENDING.value}
        if video_id is None:  # the "claim" partial index: pending URLs only
            return self.urls.find_one(pending, {"_id": 1}) is not None
        links = self.links.find(
            {"video_id": video_id, "provider": provider, "area": area}, {"_id": 0, "url": 1}
        )
        for chunk in _chunks(link["url"] for link in links):
            if self.urls.find_one({**pending, "url": {"$in": chunk}}, {"_id": 1}) is not None:
                return True
        return False

    @_reconnecting()
    def counts_by_target(
        self, video_id: str | None = None
    ) -> dict[tuple[str, str], dict[UrlState, int]]:
        result: dict[tuple[str, str], dict[UrlState, int]] = {}

        def add(provider: str, area: str, state: UrlState, n: int) -> None:
            states = result.setdefault((provider, area), {})
            states[state] = states.get(state, 0) + n

        if video_id is None:
            by_state = {"provider": "$provider", "area": "$area", "state": "$state"}
            for row in self.urls.aggregate([{"$group": {"_id": by_state, "n": {"$sum": 1}}}]):
                key = row["_id"]
                add(key["provider"], key["area"], UrlState(key["state"]), row["n"])
            skipped: Doc = {}
        else:
            for doc in self._video_url_docs(video_id):
                add(doc["provider"], doc["area"], UrlState(doc["state"]), 1)
            skipped = {"video_id": video_id}
        by_target = {"provider": "$provider", "area": "$area"}
        for row in self.skipped.aggregate(
            [{"$match": skipped}, {"$group": {"_id": by_target, "n": {"$sum": 1}}}]
        ):
            add(row["_id"]["provider"], row["_id"]["area"], UrlState.SKIPPED, row["n"])
        return result

    @_reconnecting()
    def pending_groups(self, provider: str, area: str) -> list[PendingGroup]:
        target = {"provider": provider, "area": area}
        docs = list(
            self.urls.find(
                {**target, "state": UrlState.PENDING.value},
                {"_id": 0, "url": 1, "priority": 1, "seq": 1},
            ).sort([("priority", ASCENDING), ("seq", ASCENDING)])
        )
        first_video: dict[str, str] = {}
        for chunk in _chunks(doc["url"] for doc in docs):
            for link in self.links.find(
                {**target, "url": {"$in": chunk}}, {"_id": 0, "url": 1, "video_id": 1}
            ):
                known = first_video.get(link["url"])
                if known is None or link["video_id"] < known:
                    first_video[link["url"]] = link["video_id"]
        groups: dict[tuple[str, int], int] = {}  # insertion order: claim order of first URLs
        for doc in docs:
            video_id = first_video.get(doc["url"])
            if video_id is not None:
                key = (video_id, doc["priority"])
                groups[key] = groups.get(key, 0) + 1
        ordered = sorted(groups.items(), key=lambda item: item[0][1])  # stable: by priority
        return [PendingGroup(video, priority, n) for (video, priority), n in ordered]

    @_reconnecting()
    def failures(self, video_id: str | None = None, limit: int = 20) -> list[UrlRecord]:
        """Failed and invalid URLs, in queue order."""
        failed = {"$in": [UrlState.FAILED.value, UrlState.INVALID.value]}
        if video_id is None:
            docs = list(self.urls.find({"state": failed}).sort("seq", 1).limit(limit))
        else:
            docs = sorted(self._video_url_docs(video_id, failed), key=lambda doc: doc["seq"])[
                :limit
            ]
        return [_url_record(doc) for doc in docs]

    # Quota ----------------------------------------------------------------
    @_reconnecting()
    def sync_quota(
        self,
        provider: str,
        area: str,
        day: str,
        limit: int | None,
        used: int,
        *,
        settles_seen: int | None = None,
    ) -> QuotaDay:
        key = {"provider": provider, "area": area, "day": day}
        # One pipeline update, so the check and the write see the same document.
        current: object = False
        if settles_seen is not None:
            current = {
                "$and": [
                    {"$eq": [{"$ifNull": ["$inflight", 0]}, 0]},
                    {"$eq": [{"$ifNull": ["$settles", 0]}, settles_seen]},
                ]
            }
        grown = {"$max": [{"$ifNull": ["$used", used]}, used]}
        self.quota.update_one(
            key,
            [
                {
                    "$set": {
                        "limit": limit,
                        "used": {"$cond": [current, used, grown]},
                        "inflight": {"$ifNull": ["$inflight", 0]},
                        "settles": {"$ifNull": ["$settles", 0]},
                    }
                }
            ],
            upsert=True,
        )
        doc = self.quota.find_one(key)
        assert doc is not None  # just upserted
        return _quota_day(doc)

    def reserve_quota(self, provider: str, area: str, day: str, n: int) -> int:
        key = {"provider": provider, "area": area, "day": day}
        grant_id = uuid.uuid4().hex
        granted = self._grant(key, f"grants.{grant_id}", n, None)
        # The marker only made a retry safe; dropping it changes no figure.
        self._drop_marker(key, f"grants.{grant_id}")
        return granted

    def _hold(self, key: Doc, hold_id: str, n: int, until: dt.datetime) -> int:
        """Reserve up to ``n`` as a hold that carries its lease; how many were granted."""
        return self._grant(key, f"holds.{hold_id}", n, until)

    @_reconnecting()
    def _grant(self, key: Doc, marker: str, n: int, until: dt.datetime | None) -> int:
        """Reserve up to ``n``, recording ``marker`` in the same update.

        A retry after an unknown outcome (the connection dropped after the
        ``$inc`` was sent) finds the marker and returns what that grant took,
        so nothing is counted twice.
        """
        want = n
        # Each round either grants, or learns what is left after other workers'
        # reservations; the bound only guards against endless contention.
        for _ in range(50):
            if want <= 0:
                return 0
            value: Doc | int = want if until is None else {"n": want, "until": until}
            if self._reserve_exactly(key, want, marker, value):
                return want
            doc = self.quota.find_one(key)
            done = _marked(doc, marker)
            if done is not None:
                return done  # a lost attempt applied
            if doc is None:
                try:
                    self.quota.insert_one(
                        {
                            **key,
                            "limit": None,
                            "used": 0,
                            "inflight": want,
                            **_nested(marker, value),
                        }
                    )
                except DuplicateKeyError:
                    continue  # another worker created the day first (or our lost insert did)
                return want
            remaining = _quota_day(doc).remaining
            want = n if remaining is None else min(n, remaining)
        return 0

    def _reserve_exactly(self, key: Doc, want: int, marker: str, value: Doc | int) -> bool:
        """One atomic conditional ``$inc`` and marker: all of ``want`` or nothing."""
        fits = {"$expr": {"$lte": [{"$add": ["$used", "$inflight", want]}, "$limit"]}}
        result = self.quota.update_one(
            {**key, marker: {"$exists": False}, "$or": [{"limit": None}, fits]},
            {"$inc": {"inflight": want}, "$set": {marker: value}},
        )
        return result.modified_count == 1

    @_reconnecting()
    def _drop_marker(self, key: Doc, marker: str) -> None:
        self.quota.update_one(key, {"$unset": {marker: ""}})

    @_reconnecting()
    def _unhold(self, key: Doc, hold_id: str, give_back: int) -> None:
        """The hold becomes the claim's: give back what was not claimed, once."""
        self.quota.update_one(
            {**key, f"holds.{hold_id}": {"$exists": True}},
            {"$unset": {f"holds.{hold_id}": ""}, "$inc": {"inflight": -give_back}},
        )

    @_reconnecting(retry=False)
    def settle_quota(self, provider: str, area: str, day: str, reserved: int, used: int) -> None:
        self.quota.update_one(
            {"provider": provider, "area": area, "day": day},
            [
                {
                    "$set": {
                        "used": {"$add": [{"$ifNull": ["$used", 0]}, used]},
                        "inflight": {
                            "$max": [0, {"$subtract": [{"$ifNull": ["$inflight", 0]}, reserved]}]
                        },
                        "settles": {"$add": [{"$ifNull": ["$settles", 0]}, 1]},
                    }
                }
            ],
            upsert=True,
        )

    @_reconnecting()
    def exhaust_quota(self, provider: str, area: str, day: str) -> None:
        """Used becomes the limit; with no known limit both become ``EXHAUSTED``."""
        limit = {"$ifNull": ["$limit", EXHAUSTED]}
        self.quota.update_one(
            {"provider": provider, "area": area, "day": day},
            [
                {
                    "$set": {
                        "limit": limit,
                        "used": limit,
                        "inflight": {"$ifNull": ["$inflight", 0]},
                    }
                }
            ],
            upsert=True,
        )

    @_reconnecting()
    def quota_day(self, provider: str, area: str, day: str) -> QuotaDay | None:
        doc = self.quota.find_one({"provider": provider, "area": area, "day": day})
        return None if doc is None else _quota_day(doc)

    # Workers --------------------------------------------------------------
    @_reconnecting()
    def heartbeat(
        self, scope: str, worker_id: str, now: dt.datetime, ttl: dt.timedelta
    ) -> dict[str, dt.datetime]:
        self.workers.delete_many({"scope": scope, "seen_at": {"$lt": now - ttl}})
        # Idempotent: a retried beat only sets the same time again.
        self.workers.update_one(
            {"_id": f"{scope}\n{worker_id}"},
            {
                "$set": {"scope": scope, "worker_id": worker_id, "seen_at": now},
                "$setOnInsert": {"joined_at": now},
            },
            upsert=True,
        )
        return {
            str(doc["worker_id"]): _moment(doc["joined_at"])
            for doc in self.workers.find({"scope": scope})
        }

    @_reconnecting()
    def leave(self, scope: str, worker_id: str) -> None:
        self.workers.delete_one({"_id": f"{scope}\n{worker_id}"})

    @_reconnecting()
    def take_turn(self, name: str, holder: str, now: dt.datetime, ttl: dt.timedelta) -> bool:
        # One conditional upsert: it matches a free (expired) or own turn; when
        # another holds it, the upsert's insert collides on _id and we lose.
        try:
            self.turns.update_one(
                {"_id": name, "$or": [{"until": {"$lt": now}}, {"holder": holder}]},
                {"$set": {"holder": holder, "until": now + ttl}},
                upsert=True,
            )
        except DuplicateKeyError:
            return False
        doc = self.turns.find_one({"_id": name})
        return doc is not None and doc.get("holder") == holder

    @_reconnecting()
    def release_turn(self, name: str, holder: str) -> None:
        self.turns.delete_one({"_id": name, "holder": holder})

    # Outbox ---------------------------------------------------------------
    # One document per (topic, key), _id "topic\nkey": the insert is an upsert
    # that only sets fields on insert, so a repeat (or a retry after a dropped
    # connection) finds the first event instead of adding one.
    @_reconnecting()
    def enqueue_event(
        self,
        topic: str,
        key: str,
        payload: Mapping[str, Any],
        now: dt.datetime,
        *,
        due: dt.datetime | None = None,
    ) -> tuple[OutboxEvent, bool]:
        doc_id = f"{topic}\n{key}"
        fresh = {
            "event_id": f"evt_{uuid.uuid4().hex}",
            "topic": topic,
            "key": key,
            "payload": dict(payload),
            "state": EventState.PENDING.value,
            "created_at": now,
            "due_at": due or now,
            "attempts": 0,
            "last_error": None,
            "lease_until": None,
            "worker": None,
        }
        try:
            result = self.outbox.update_one({"_id": doc_id}, {"$setOnInsert": fresh}, upsert=True)
            added = result.upserted_id is not None
        except DuplicateKeyError:  # another writer inserted it at the same moment
            added = False
        doc = self.outbox.find_one({"_id": doc_id})
        assert doc is not None
        return _outbox_event(doc), added

    @_reconnecting()
    def claim_events(
        self, topic: str, now: dt.datetime, lease: dt.timedelta, limit: int, worker: str
    ) -> list[OutboxEvent]:
        # One conditional update per event: of several workers, exactly one
        # matches an event while it is unleased (or its lease ran out).
        claimable: Doc = {
            "topic": topic,
            "state": EventState.PENDING.value,
            "due_at": {"$lte": now},
            "$or": [{"lease_until": None}, {"lease_until": {"$lte": now}}],
        }
        won: list[OutboxEvent] = []
        for _ in range(limit):
            doc = self.outbox.find_one_and_update(
                claimable,
                {"$set": {"lease_until": now + lease, "worker": worker}},
                sort=[("due_at", ASCENDING), ("created_at", ASCENDING)],
                return_document=ReturnDocument.AFTER,
            )
            if doc is None:
                break
            won.append(_outbox_event(doc))
        return won

    def _settle_event(self, event_id: str, fields: Doc) -> None:
        self.outbox.update_one(
            {"event_id": event_id, "state": EventState.PENDING.value},
            {"$set": {**fields, "lease_until": None}, "$inc": {"attempts": 1}},
        )

    @_reconnecting(retry=False)
    def mark_event_delivered(self, event_id: str, now: dt.datetime) -> None:
        self._settle_event(event_id, {"state": EventState.DELIVERED.value, "due_at": now})

    @_reconnecting(retry=False)
    def reschedule_event(self, event_id: str, due: dt.datetime, error: str) -> None:
        self._settle_event(event_id, {"due_at": due, "last_error": error})

    @_reconnecting(retry=False)
    def fail_event(self, event_id: str, error: str, now: dt.datetime) -> None:
        self._settle_event(
            event_id, {"state": EventState.FAILED.value, "last_error": error, "due_at": now}
        )

    @_reconnecting()
    def prune_events(self, topic: str, before: dt.datetime) -> int:
        settled = [EventState.DELIVERED.value, EventState.FAILED.value]
        result = self.outbox.delete_many(
            {"topic": topic, "state": {"$in": settled}, "due_at": {"$lt": before}}
        )
        return int(result.deleted_count)

    @_reconnecting()
    def get_event(self, event_id: str) -> OutboxEvent | None:
        doc = self.outbox.find_one({"event_id": event_id})
        return None if doc is None else _outbox_event(doc)

    @_reconnecting()
    def list_events(
        self,
        topic: str,
        *,
        state: EventState | None = None,
        key_prefix: str | None = None,
        limit: int = 100,
    ) -> list[OutboxEvent]:
        where: Doc = {"topic": topic}
        if state is not None:
            where["state"] = state.value
        if key_prefix:
            where["key"] = {"$regex": f"^{re.escape(key_prefix)}"}
        docs = self.outbox.find(where).sort([("created_at", -1), ("_id", -1)]).limit(limit)
        return [_outbox_event(doc) for doc in docs]


def _redacted(text: str, secrets: Sequence[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _bulk(collection: Collection[Doc], ops: list[UpdateOne], *, ordered: bool = False) -> None:
    """One round trip (pymongo splits very large lists); racing upserts are fine."""
    if not ops:
        return
    try:
        collection.bulk_write(ops, ordered=ordered)
    except BulkWriteError as exc:
        # Two workers upserting the same URL: one insert loses, the row exists.
        errors = exc.details.get("writeErrors", [])
        if any(error.get("code") != _DUPLICATE_KEY for error in errors):
            raise


def _link(video_id: str, provider: str, area: str, url: str) -> UpdateOne:
    link = {"video_id": video_id, "provider": provider, "area": area, "url": url}
    return UpdateOne(link, {"$setOnInsert": link}, upsert=True)


def _queue_update(target: Doc, item: QueuedUrl, seq: int, known: Doc | None) -> UpdateOne:
    """Insert a new URL, or put a finished one back in the queue."""
    fresh = {
        "kind": item.kind,
        "priority": item.priority,
        "seq": seq,
        "state": UrlState.PENDING.value,
        "attempts": 0,
    }
    if known is None:
        return UpdateOne({**target, "url": item.url}, {"$setOnInsert": fresh}, upsert=True)
    # Conditional on the state we saw, so a concurrent change wins.
    return UpdateOne(
        {"_id": known["_id"], "state": known["state"]},
        {"$set": fresh, "$unset": {"task_id": "", "last_error": "", "expires_at": ""}},
    )


def _expired(doc: Doc, now: dt.datetime, max_age: dt.timedelta) -> bool:
    expires_at = _aware(doc.get("expires_at"))
    pushed_at = _aware(doc.get("pushed_at"))
    return (expires_at is not None and expires_at <= now) or (
        pushed_at is not None and pushed_at <= now - max_age
    )


@dataclasses.dataclass(frozen=True)
class _ClaimEnd:
    """What :meth:`MongoLedger.settle_claim` does to a claim's URLs (kept in its journal)."""

    submitted: list[tuple[str, list[str]]]
    invalid: dict[str, str]
    released: list[str]
    error: str | None
    count_attempt: bool

    @classmethod
    def from_journal(cls, entry: Doc) -> _ClaimEnd:
        if "task_id" in entry:  # written by mark_submitted_settling before settle_claim
            submitted = [(entry["task_id"], list(entry["urls"]))]
        else:
            submitted = [(item["task_id"], list(item["urls"])) for item in entry["submitted"]]
        return cls(
            submitted,
            {item["url"]: item["reason"] for item in entry.get("invalid") or []},
            list(entry.get("released") or []),
            entry.get("error"),
            bool(entry.get("count_attempt")),
        )

    def count(self) -> int:
        return sum(len(urls) for _, urls in self.submitted) + len(self.invalid) + len(self.released)


def _claimed(claim: Claim, urls: list[str]) -> Doc:
    return {
        "provider": claim.provider,
        "area": claim.area,
        "url": {"$in": urls},
        "claim_id": claim.claim_id,
        "state": UrlState.RESERVED.value,
    }


def _outcome_updates(
    outcome: Outcome, where: Doc, expires_at: dt.datetime, max_attempts: int
) -> list[UpdateOne]:
    if outcome.state is UrlState.DONE:
        return [
            UpdateOne(
                where,
                {
                    "$set": {"state": UrlState.DONE.value, "expires_at": expires_at},
                    "$unset": {"last_error": ""},
                },
            )
        ]
    if outcome.state is UrlState.INVALID and outcome.retry_once:
        # Ordered: of the two conditional updates at most one matches.
        return [
            UpdateOne(
                {**where, "attempts": {"$gte": 1}},
                {
                    "$set": {"state": UrlState.INVALID.value, "last_error": outcome.reason},
                    "$inc": {"attempts": 1},
                },
            ),
            UpdateOne(
                {**where, "attempts": {"$lt": 1}},
                {
                    "$set": {"state": UrlState.PENDING.value, "last_error": outcome.reason},
                    "$unset": {"task_id": ""},
                    "$inc": {"attempts": 1},
                },
            ),
        ]
    if outcome.state is UrlState.INVALID:
        return [
            UpdateOne(
                where, {"$set": {"state": UrlState.INVALID.value, "last_error": outcome.reason}}
            )
        ]
    if outcome.state is UrlState.FAILED:
        last = max_attempts - 1
        return [
            UpdateOne(
                {**where, "attempts": {"$gte": last}},
                {
                    "$set": {"state": UrlState.FAILED.value, "last_error": outcome.reason},
                    "$inc": {"attempts": 1},
                },
            ),
            UpdateOne(
                {**where, "attempts": {"$lt": last}},
                {
                    "$set": {"state": UrlState.PENDING.value, "last_error": outcome.reason},
                    "$unset": {"task_id": ""},
                    "$inc": {"attempts": 1},
                },
            ),
        ]
    raise ValueError(f"an outcome is DONE, FAILED or INVALID, not {outcome.state}")


def _marked(doc: Doc | None, marker: str) -> int | None:
    """What the grant recorded under ``marker`` took, if it applied."""
    group, _, name = marker.partition(".")
    value = ((doc or {}).get(group) or {}).get(name)
    if value is None:
        return None
    return int(value["n"]) if isinstance(value, dict) else int(value)


def _nested(marker: str, value: object) -> Doc:
    group, _, name = marker.partition(".")
    return {group: {name: value}}


def _quota_day(doc: Doc) -> QuotaDay:
    return QuotaDay(
        doc["provider"],
        doc["area"],
        doc["day"],
        doc.get("limit"),
        doc.get("used", 0),
        doc.get("inflight", 0),
        doc.get("settles", 0),
    )


def _video(doc: Doc) -> VideoRecord:
    return VideoRecord(
        doc["_id"],
        doc["m3u8_url"],
        doc["url_count"],
        VideoState(doc["state"]),
        _moment(doc["created_at"]),
        _moment(doc["updated_at"]),
    )


def _legacy_video(doc: Doc) -> VideoRecord:
    """A document the old script wrote; its fields were never validated."""
    pushed = doc.get("pushed_at")
    if isinstance(pushed, str):
        try:
            pushed = dt.datetime.fromisoformat(pushed)
        except ValueError:
            pushed = None
    if not isinstance(pushed, dt.datetime):
        oid = doc.get("_id")
        pushed = getattr(oid, "generation_time", None) or dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    moment = _moment(pushed)
    return VideoRecord(
        str(doc["video_id"]),
        str(doc.get("m3u8_url") or ""),
        int(doc.get("ts_count") or 0),
        VideoState.LEGACY,
        moment,
        moment,
    )


def _outbox_event(doc: Doc) -> OutboxEvent:
    return OutboxEvent(
        event_id=str(doc["event_id"]),
        topic=str(doc["topic"]),
        key=str(doc["key"]),
        payload=dict(doc["payload"]),
        state=EventState(doc["state"]),
        created_at=_moment(doc["created_at"]),
        due_at=_moment(doc["due_at"]),
        attempts=int(doc["attempts"]),
        last_error=doc.get("last_error"),
        lease_until=_aware(doc.get("lease_until")),
        worker=doc.get("worker"),
    )


def _url_record(doc: Doc) -> UrlRecord:
    return UrlRecord(
        doc["url"],
        doc["provider"],
        doc["area"],
        doc["kind"],
        UrlState(doc["state"]),
        doc.get("task_id"),
        doc.get("attempts", 0),
        doc.get("last_error"),
        _aware(doc.get("pushed_at")),
        _aware(doc.get("expires_at")),
    )
