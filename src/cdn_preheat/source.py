"""Where videos come from: CSV or JSON-lines files of ``video_id,m3u8_url``."""

from __future__ import annotations

import csv
import json
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class VideoSource:
    video_id: str
    m3u8_url: str
    line: int


@dataclass(frozen=True)
class BadLine:
    line: int
    reason: str


MAX_VIDEO_ID = 512


def video_id_problem(video_id: str) -> str | None:
    """Why ``video_id`` cannot name a video (None when it can)."""
    if not video_id.strip():
        return "empty video id"
    if any(unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") for char in video_id):
        return f"video id {video_id!r} holds control characters"
    if len(video_id) > MAX_VIDEO_ID:
        return f"video id is longer than {MAX_VIDEO_ID} characters"
    return None


def _check(video_id: str, url: str, line: int) -> VideoSource | BadLine:
    video_id, url = video_id.strip(), url.strip()
    problem = video_id_problem(video_id)
    if problem is not None:
        return BadLine(line, problem)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return BadLine(line, f"not an http(s) URL: {url[:200]!r}")
    return VideoSource(video_id, url, line)


def _json_line(text: str, line: int) -> VideoSource | BadLine:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return BadLine(line, f"invalid JSON ({exc.msg})")
    except RecursionError:
        return BadLine(line, "JSON nested too deeply")
    if not isinstance(data, dict):
        return BadLine(line, "expected a JSON object with video_id and m3u8_url")
    video_id, url = data.get("video_id"), data.get("m3u8_url")
    if not isinstance(video_id, str | int) or not isinstance(url, str):
        return BadLine(line, "expected string fields video_id and m3u8_url")
    return _check(str(video_id), url, line)


def read_videos(lines: Iterable[str]) -> Iterator[VideoSource | BadLine]:
    """Parse each line as JSON (when it starts with ``{``) or CSV; a header is optional.

    Blank lines and lines starting with ``#`` are ignored. Bad lines are
    yielded as :class:`BadLine` with their number so nothing is silently lost.
    """
    for number, raw in enumerate(lines, start=1):
        text = raw.strip().lstrip("\ufeff")
        if not text or text.startswith("#"):
            continue
        if text.startswith(("{", "[")):
            # "[" too: a JSON array is a JSON line that is not an object, not a CSV
            # line whose id is "[1" (no video id starts with a bracket).
            yield _json_line(text, number)
            continue
        try:
            fields = next(csv.reader([text]))
        except csv.Error as exc:
            yield BadLine(number, f"unreadable CSV ({exc})")
            continue
        if number == 1 and [f.strip().lower() for f in fields[:2]] == ["video_id", "m3u8_url"]:
            continue
        if len(fields) != 2:
            hint = ""
            if len(fields) == 1 and len(text.split()) == 2:
                # Pasted from a spreadsheet or a shell: a tab or spaces between the two.
                hint = " (separate them with a comma, not a tab or spaces)"
            yield BadLine(number, f"expected 2 fields video_id,m3u8_url, found {len(fields)}{hint}")
            continue
        yield _check(fields[0], fields[1], number)
