"""Storage events: a playlist uploaded to the bucket queues its video, after a settle delay.

``POST /v1/events/qiniu`` takes Qiniu Kodo's event notification callback
(https://developer.qiniu.com/kodo/8610/dev-event-notification): a JSON object
whose ``Message`` is a JSON *string* holding ``event`` (``put``, ``mkfile``,
``copy``, ``append``, ``move``, ...), ``bucket``, ``key``, ``hash`` (the
object's Qiniu Etag) and, for ``copy``/``move``, ``dest_bucket``/``dest_key``;
``Subject`` is "Qiniu KODO Notification". A ``Message`` already decoded to an
object is taken too.

``POST /v1/events/s3`` takes S3 event notifications as AWS, MinIO and
S3-compatible stores send them
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html):
``Records[]`` with ``eventName`` ``ObjectCreated:*`` (MinIO writes
``s3:ObjectCreated:*``) and ``s3.bucket.name``, ``s3.object.key`` (URL-encoded
as a form value: ``+`` is a space), ``versionId``, ``eTag``, ``sequencer``.
A body without ``Records`` (S3's ``s3:TestEvent``) is answered 200, ignored.

A created object whose key ends in ``.m3u8`` goes to the ledger's outbox
(topic ``storage``) keyed by (bucket, key, version), version being the
``versionId``, else the ``eTag``/``hash``, else the ``sequencer``; a repeated
notification (senders retry) is the same entry, so it queues nothing twice,
and an entry outlives a restart. ``CDN_PREHEAT_EVENTS_SETTLE_SECONDS`` (60 by
default) after the notification, since segments may still be uploading, the
service's outbox runner reads the playlist from ``CDN_PREHEAT_EVENTS_ORIGIN``
(the host serving the bucket: ``https://HOST/KEY``) and queues it as ``batch
--qiniu-bucket`` would: a master playlist is a video, and so is a media
playlist that no master among the bucket's notified playlists (in its folder
or above) references; the id is the key without ``.m3u8``
(``discover.video_id_for``). Queueing goes through the same door as
``POST /v1/videos`` (the SSRF policy, a known video left as it is).

Senders such as Qiniu's callback cannot set headers, so besides
``Authorization: Bearer`` these routes take ``?token=TOKEN``; the log filter
masks ``token=`` in every line (``cdn_preheat.redact``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import posixpath
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from cdn_preheat._sync import run_coroutine
from cdn_preheat.discover import PLAYLIST_SUFFIX, playlist_url, top_level_playlists, video_id_for
from cdn_preheat.errors import ConfigError, InputError, PlaylistError
from cdn_preheat.redact import redact
from cdn_preheat.service.auth import require_token_or_query
from cdn_preheat.service.webhooks import (
    DeliveryError,
    GiveUp,
    OutboxRunner,
    Topic,
    retry_schedule,
)

if TYPE_CHECKING:
    from cdn_preheat.config import Settings
    from cdn_preheat.ledger.base import Ledger, OutboxEvent
    from cdn_preheat.service.engine import ServiceEngine

log = logging.getLogger(__name__)

TOPIC = "storage"
# Qiniu event types that leave an object at ``key`` (or ``dest_key``), per the page above.
QINIU_CREATED = frozenset({"put", "mkfile", "copy", "append", "move"})
QINIU_DESTINED = frozenset({"copy", "move"})
# Bucket playlists looked at when deciding whether a media playlist is a video.
SIBLINGS_LOOKED_AT = 200

router = APIRouter(tags=["events"], dependencies=[Depends(require_token_or_query)])


@dataclass(frozen=True)
class StoredObject:
    """One created object a notification told of."""

    source: str  # "qiniu" or "s3"
    bucket: str
    key: str
    version: str

    @property
    def outbox_key(self) -> str:
        return f"{self.source}\n{self.bucket}\n{self.key}\n{self.version}"


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def qiniu_objects(body: object) -> list[StoredObject]:
    """The objects a Qiniu Kodo callback says were created (one message a callback)."""
    if not isinstance(body, dict) or "Message" not in body:
        raise InputError("a Qiniu event notification has a Message field; this body has none.")
    message = body["Message"]
    if isinstance(message, str):
        try:
            message = json.loads(message)
        except ValueError:
            raise InputError("the notification's Message is not JSON.") from None
    if not isinstance(message, dict):
        raise InputError("the notification's Message is not a JSON object.")
    event = _text(message.get("event"))
    if event not in QINIU_CREATED:
        return []
    bucket, key = _text(message.get("bucket")), _text(message.get("key"))
    if event in QINIU_DESTINED and _text(message.get("dest_key")):
        bucket = _text(message.get("dest_bucket")) or bucket
        key = _text(message.get("dest_key"))
    if not key:
        raise InputError("the notification's Message names no key.")
    version = _text(message.get("hash")) or str(message.get("time", ""))
    return [StoredObject("qiniu", bucket, key, version)]


def s3_objects(body: object) -> list[StoredObject]:
    """The objects an S3 event notification says were created."""
    if not isinstance(body, dict):
        raise InputError("an S3 event notification is a JSON object with Records.")
    records = body.get("Records")
    if records is None:
        return []  # s3:TestEvent and other notices without records
    if not isinstance(records, list):
        raise InputError("Records must be a list.")
    found = []
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise InputError(f"record {number} is not a JSON object.")
        name = _text(record.get("eventName")).removeprefix("s3:")
        if not name.startswith("ObjectCreated:"):
            continue
        s3 = record.get("s3")
        obj = s3.get("object") if isinstance(s3, dict) else None
        bucket = s3.get("bucket") if isinstance(s3, dict) else None
        if not isinstance(obj, dict) or not _text(obj.get("key")):
            raise InputError(f"record {number} has no s3.object.key.")
        version = (
            _text(obj.get("versionId")) or _text(obj.get("eTag")) or _text(obj.get("sequencer"))
        )
        bucket_name = _text(bucket.get("name")) if isinstance(bucket, dict) else ""
        found.append(StoredObject("s3", bucket_name, unquote_plus(obj["key"]), version))
    return found


def settle_delay(settings: Settings) -> dt.timedelta:
    return dt.timedelta(seconds=settings.cdn_preheat_events_settle_seconds)


def record_objects(
    ledger: Ledger,
    objects: Iterable[StoredObject],
    origin: str,
    now: dt.datetime,
    delay: dt.timedelta,
) -> dict[str, Any]:
    """Put the playlists among ``objects`` in the outbox, due after ``delay``; the answer."""
    from pydantic import ValidationError

    from cdn_preheat.service.api import VideoIn

    accepted, refused, ignored = [], [], 0
    for obj in objects:
        if not obj.key.endswith(PLAYLIST_SUFFIX):
            ignored += 1
            continue
        url = playlist_url(origin, obj.key)
        try:  # the API's own rules for a video id and URL
            VideoIn(video_id=video_id_for(obj.key), m3u8_url=url)
        except ValidationError as exc:
            reason = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
            refused.append({"key": obj.key, "error": f"{reason}; not queued."})
            continue
        payload = {
            "source": obj.source,
            "bucket": obj.bucket,
            "key": obj.key,
            "version": obj.version,
            "video_id": video_id_for(obj.key),
            "m3u8_url": url,
        }
        event, new = ledger.enqueue_event(TOPIC, obj.outbox_key, payload, now, due=now + delay)
        accepted.append(
            {
                "key": obj.key,
                "video_id": payload["video_id"],
                "event_id": event.event_id,
                "due_at": event.due_at.isoformat(),
                "state": str(event.state),
                "repeated": not new,
            }
        )
    return {"accepted": accepted, "refused": refused, "ignored": ignored}


async def _read_json(request: Request) -> object:
    raw = await request.body()
    try:
        return json.loads(raw)
    except ValueError:
        raise InputError("the body is not valid JSON.") from None


def _origin(settings: Settings) -> str:
    origin = settings.cdn_preheat_events_origin
    if not origin:
        raise ConfigError(
            "storage events need CDN_PREHEAT_EVENTS_ORIGIN, the host serving the bucket "
            "(e.g. media.example.com), to build playlist URLs from keys."
        )
    playlist_url(origin, "probe.m3u8")  # InputError for a value that is not a host
    return origin


async def _accept(request: Request, objects: list[StoredObject]) -> JSONResponse:
    engine: ServiceEngine = request.app.state.engine
    settings: Settings = request.app.state.settings
    origin = _origin(settings)
    now = dt.datetime.now(dt.UTC)
    answer = await anyio.to_thread.run_sync(
        record_objects, engine.ledger, objects, origin, now, settle_delay(settings)
    )
    wake = getattr(request.app.state, "storage_runner_wake", None)
    if wake is not None and not settings.cdn_preheat_events_settle_seconds:
        wake.set()
    return JSONResponse(answer, status_code=202 if answer["accepted"] else 200)


@router.post("/v1/events/qiniu", summary="A Qiniu Kodo event notification (callback).")
async def qiniu_event(request: Request) -> JSONResponse:
    return await _accept(request, qiniu_objects(await _read_json(request)))


@router.post("/v1/events/s3", summary="An S3 event notification (AWS, MinIO, S3-compatible).")
async def s3_event(request: Request) -> JSONResponse:
    return await _accept(request, s3_objects(await _read_json(request)))


# Settling: the outbox runner's handler --------------------------------------


class StorageHandler:
    """Queues the video of a settled playlist notification (in the runner's thread)."""

    def __init__(self, engine: ServiceEngine) -> None:
        self.engine = engine

    def __call__(self, event: OutboxEvent) -> None:
        payload = event.payload
        url = str(payload["m3u8_url"])
        if not self._is_top_level(payload, url):
            log.info("storage event %s: %s is a variant playlist, not a video",
                     event.event_id, payload["key"])  # fmt: skip
            return
        try:
            submitted = run_coroutine(self.engine.submit(str(payload["video_id"]), url))
        except InputError as exc:  # refused for good (the SSRF policy, a bad id)
            raise GiveUp(str(exc)) from None
        except PlaylistError as exc:  # not readable yet (still uploading?): retried
            raise DeliveryError(str(exc)) from None
        log.info("storage event %s: video %s %s", event.event_id, payload["video_id"],
                 "queued" if submitted.created else "already known")  # fmt: skip

    def _is_top_level(self, payload: dict[str, Any], url: str) -> bool:
        """``batch --qiniu-bucket``'s rule over the playlists the bucket notified of."""
        from cdn_preheat.app import expand_options

        folder = posixpath.dirname(str(payload["key"]))
        siblings = []
        same_bucket = f"{payload['source']}\n{payload['bucket']}\n"
        recent = self.engine.ledger.list_events(
            TOPIC, key_prefix=same_bucket, limit=SIBLINGS_LOOKED_AT
        )
        for other in recent:
            key = str(other.payload.get("key", ""))
            if key == payload["key"]:
                continue
            other_folder = posixpath.dirname(key)
            if folder == other_folder or folder.startswith(f"{other_folder}/") or not other_folder:
                siblings.append(str(other.payload["m3u8_url"]))
        candidates = list(dict.fromkeys([*siblings, url]))
        return url in top_level_playlists(candidates, expand_options(self.engine.settings))


class _AccessLogRedactor(logging.Filter):
    """Masks secrets in uvicorn's access records, keeping their argument tuple.

    uvicorn's access formatter reads ``record.args`` (client, method, path with
    query, version, status), so the arguments are redacted in place rather
    than folded into the message as ``redact.RedactingFilter`` does.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def hide_query_tokens() -> None:
    """Mask ``?token=`` in uvicorn's access log, whatever handlers ``serve`` configured.

    A filter on the logger itself runs before any handler sees the record
    (uvicorn logs each request line to ``uvicorn.access`` directly).
    """
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _AccessLogRedactor) for f in access.filters):
        access.addFilter(_AccessLogRedactor())


def storage_topic(engine: ServiceEngine) -> Topic:
    # A playlist that cannot be read yet is tried again for an hour.
    return Topic(
        StorageHandler(engine),
        schedule=retry_schedule(initial=10.0, longest=600.0),
        retry_for=dt.timedelta(hours=1),
    )


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Settle storage notifications in a thread for the app's lifetime."""
    hide_query_tokens()
    engine: ServiceEngine = app.state.engine
    poll = float(getattr(app.state, "outbox_poll", 1.0))
    runner = OutboxRunner(engine.ledger, {TOPIC: storage_topic(engine)}, poll=poll)
    app.state.storage_runner_wake = runner.wake
    runner.start()
    try:
        yield
    finally:
        await anyio.to_thread.run_sync(runner.stop)
