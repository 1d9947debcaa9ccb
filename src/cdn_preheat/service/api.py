"""Version 1 of the HTTP API: ``/v1/videos``, verify, purge, quota.

The routes and bodies are a contract clients rely on; every route needs
``Authorization: Bearer TOKEN`` (:mod:`cdn_preheat.service.auth`). Bodies are
validated whole before anything is written: unknown fields, a video id over
256 characters or holding control characters, or a URL that is not http(s)
is a 422 with one sentence.
"""

from __future__ import annotations

import asyncio
import unicodedata
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from cdn_preheat.errors import InputError, PreheatError
from cdn_preheat.service.auth import require_token
from cdn_preheat.service.deps import EngineDep
from cdn_preheat.service.engine import VideoView

MAX_VIDEO_ID = 256
MAX_URL = 8192
MAX_BATCH = 1000
# Videos of one batch expanded at a time (each fetch is bounded by CDN_PREHEAT_FETCH_*).
BATCH_CONCURRENCY = 16

router = APIRouter(prefix="/v1", dependencies=[Depends(require_token)], tags=["v1"])

VideoStateName = Literal["queued", "submitted", "done", "failed", "legacy", "cancelled"]


def _check_video_id(value: str) -> str:
    if not value.strip():
        raise ValueError("video_id is empty")
    if len(value) > MAX_VIDEO_ID:
        raise ValueError(f"video_id is longer than {MAX_VIDEO_ID} characters")
    if any(unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") for char in value):
        raise ValueError("video_id holds control characters")
    return value


def _check_http_url(value: str, name: str) -> str:
    from urllib.parse import urlsplit

    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{name} must be an http(s) URL")
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VideoIn(Strict):
    video_id: str = Field(max_length=10 * MAX_VIDEO_ID, examples=["ep-101"])
    m3u8_url: str = Field(
        max_length=MAX_URL, examples=["https://origin.example.com/ep101/master.m3u8"]
    )
    reset: bool = False
    head_first: str | None = Field(
        default=None,
        description="Push the first N segments (or Ns seconds) of every rendition first;"
        " 'fifo' for none. Default 10.",
        examples=["10", "60s", "fifo"],
    )

    @field_validator("video_id")
    @classmethod
    def _video_id(cls, value: str) -> str:
        return _check_video_id(value)

    @field_validator("m3u8_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_http_url(value, "m3u8_url")


class BatchIn(Strict):
    videos: list[VideoIn] = Field(min_length=1, max_length=MAX_BATCH)


class Counts(BaseModel):
    pending: int
    submitted: int
    done: int
    failed: int
    invalid: int
    skipped: int


class UrlError(BaseModel):
    url: str
    reason: str


class PoolMember(BaseModel):
    name: str
    pushed: int = Field(description="URLs of the video this member account pushed.")


class TargetOut(BaseModel):
    """The video on one target of CDN_PREHEAT_TARGETS (a pool is one entry)."""

    name: str
    provider: str
    area: str
    state: str = Field(description="queued, submitted, done or failed on this target.")
    counts: Counts
    progress: float = Field(description="Share of the target's URLs finished, 0 to 1.")
    error: str | None = Field(description="Why this target's worker stopped (wrong keys).")
    members: list[PoolMember] | None = None


class VideoOut(BaseModel):
    video_id: str
    m3u8_url: str
    state: str
    counts: Counts
    created_at: str
    updated_at: str
    errors: list[UrlError]
    targets: list[TargetOut] | None = Field(
        default=None, description="With CDN_PREHEAT_TARGETS only: the video on each target."
    )


class BatchEntry(BaseModel):
    video_id: str
    status: int = Field(description="202 queued, 200 already known, 422 refused")
    video: VideoOut | None = None
    error: str | None = None


class BatchOut(BaseModel):
    results: list[BatchEntry]


class VideoPage(BaseModel):
    videos: list[VideoOut]
    next_cursor: str | None


class VerifyIn(Strict):
    sample: int = Field(default=50, ge=1, le=10_000, description="URLs to probe at the edge.")


class PurgeIn(Strict):
    urls: list[str] = Field(default_factory=list, max_length=100_000)
    dirs: list[str] = Field(default_factory=list, max_length=10_000)
    video_id: str | None = None
    delete: bool = Field(default=False, description="With dirs: delete instead of mark stale.")

    @field_validator("urls", "dirs")
    @classmethod
    def _urls(cls, values: list[str]) -> list[str]:
        return [_check_http_url(value, "each URL") for value in values]

    @field_validator("video_id")
    @classmethod
    def _video_id(cls, value: str | None) -> str | None:
        return None if value is None else _check_video_id(value)


class Error(BaseModel):
    error: str


NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Error}, 422: {"model": Error}}


def _not_found(video_id: str) -> JSONResponse:
    return JSONResponse({"error": f"no video {video_id!r} in the ledger."}, status_code=404)


def _out(view: VideoView) -> dict[str, Any]:
    return view.as_dict()


@router.post(
    "/videos",
    status_code=202,
    response_model=VideoOut,
    responses={200: {"model": VideoOut, "description": "Already known: nothing queued."}},
    summary="Queue a video (its playlist is expanded now; the worker pushes it).",
)
async def post_video(body: VideoIn, engine: EngineDep) -> JSONResponse:
    done = await engine.submit(
        body.video_id, body.m3u8_url, reset=body.reset, head_first=body.head_first
    )
    return JSONResponse(_out(done.video), status_code=202 if done.created else 200)


@router.post(
    "/videos:batch",
    status_code=202,
    response_model=BatchOut,
    summary="Queue up to 1,000 videos; each gets its own result.",
)
async def post_videos_batch(body: BatchIn, engine: EngineDep) -> JSONResponse:
    gate = asyncio.Semaphore(BATCH_CONCURRENCY)

    async def one(video: VideoIn) -> dict[str, Any]:
        async with gate:
            try:
                done = await engine.submit(
                    video.video_id, video.m3u8_url, reset=video.reset,
                    head_first=video.head_first,
                )  # fmt: skip
            except (InputError, PreheatError) as exc:
                from cdn_preheat import redact

                return {"video_id": video.video_id, "status": 422, "video": None,
                        "error": redact.redact(str(exc))}  # fmt: skip
            return {"video_id": video.video_id, "status": 202 if done.created else 200,
                    "video": _out(done.video), "error": None}  # fmt: skip

    results = await asyncio.gather(*(one(video) for video in body.videos))
    return JSONResponse({"results": list(results)}, status_code=202)


@router.get("/videos", response_model=VideoPage, summary="A page of videos, oldest first.")
async def list_videos(
    engine: EngineDep,
    state: Annotated[VideoStateName | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> JSONResponse:
    videos, next_cursor = await engine.videos(state, limit, cursor)
    # As it is: the model would add "targets": null to a single provider's records.
    return JSONResponse({"videos": [_out(v) for v in videos], "next_cursor": next_cursor})


@router.post(
    "/videos/{video_id:path}/verify",
    responses=NOT_FOUND,
    summary="Probe a sample of the video's URLs at the edge.",
)
async def verify_video(
    video_id: str, engine: EngineDep, body: VerifyIn | None = None
) -> JSONResponse:
    result = await engine.verify(_check_path_id(video_id), (body or VerifyIn()).sample)
    if result is None:
        return _not_found(video_id)
    return JSONResponse(result)


@router.get(
    "/videos/{video_id:path}",
    response_model=VideoOut,
    responses=NOT_FOUND,
    summary="One video's record.",
)
async def get_video(video_id: str, engine: EngineDep) -> JSONResponse:
    view = await engine.video(_check_path_id(video_id))
    return _not_found(video_id) if view is None else JSONResponse(_out(view))


@router.delete(
    "/videos/{video_id:path}",
    response_model=VideoOut,
    responses=NOT_FOUND,
    summary="Stop pushing the video's pending URLs (state cancelled; they count as skipped).",
)
async def delete_video(video_id: str, engine: EngineDep) -> JSONResponse:
    view = await engine.cancel(_check_path_id(video_id))
    return _not_found(video_id) if view is None else JSONResponse(_out(view))


@router.post("/purge", summary="Refresh URLs, directories or every URL of a video.")
async def purge(body: PurgeIn, engine: EngineDep) -> dict[str, Any]:
    return await engine.purge(body.urls, body.dirs, body.video_id, body.delete)


@router.get("/quota", summary="Today's prefetch quota per provider and area.")
async def quota(engine: EngineDep) -> dict[str, Any]:
    return {"quota": await engine.quota()}


def _check_path_id(video_id: str) -> str:
    try:
        return _check_video_id(video_id)
    except ValueError as exc:
        raise InputError(f"{exc}.") from None
