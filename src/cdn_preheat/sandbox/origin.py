"""The sandbox's HLS origin: a generated video catalog served over HTTP.

Videos are ``demo-1`` … ``demo-N`` under ``/vod/<video_id>/``. Their features
follow the number, so a small catalog still covers every playlist shape:

- every video: a master with ``variants`` TS variants of ``segments`` segments;
- even numbers: an alternate audio rendition, a WebVTT subtitle rendition, and
  AES-128 keys (two, rotated halfway);
- multiples of 3: the last variant is fMP4 (``EXT-X-MAP`` + ``.m4s``);
- every video also has a DASH MPD, ``manifest.mpd``, whose addressing follows
  the number (see :data:`DASH_MODES`): SegmentTemplate with a SegmentTimeline,
  SegmentTemplate with @duration, SegmentList, SegmentBase, or two Periods;
  even numbers add a WebVTT subtitle file.

Bodies are a few bytes derived from the path, made on request; playlists are
generated once and cached, so a bench catalog of 400,000 segments costs only
its playlist text.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from cdn_preheat.sandbox.core import LoopbackServer

if TYPE_CHECKING:
    from cdn_preheat.sandbox.origin_auth import OriginSignatures

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
MPD_TYPE = "application/dash+xml"  # ISO/IEC 23009-1, annex C
SEGMENT_SECONDS = 6
_CONTENT_TYPES = {
    "m3u8": PLAYLIST_TYPE,
    "ts": "video/mp2t",
    "m4s": "video/iso.segment",
    "mp4": "video/mp4",
    "aac": "audio/aac",
    "vtt": "text/vtt",
    "key": "application/octet-stream",
    "mpd": MPD_TYPE,
}
# The DASH addressing of demo-N is DASH_MODES[N % 5].
DASH_MODES = ("multiperiod", "timeline", "duration", "list", "base")
_VIDEO_PATH = re.compile(r"^/vod/demo-(?P<n>[1-9]\d*)/(?P<rest>.+)$")


@dataclass(frozen=True)
class VideoFeatures:
    """Which optional playlist features one generated video has."""

    renditions: bool  # alternate audio + WebVTT subtitles
    encrypted: bool  # AES-128 EXT-X-KEY
    fmp4_variant: bool  # last variant is fMP4 with EXT-X-MAP

    @classmethod
    def for_number(cls, n: int) -> VideoFeatures:
        return _features(n)


@lru_cache(maxsize=1024)
def _features(n: int) -> VideoFeatures:
    # Remembered: the origin is asked about every finished prefetch.
    return VideoFeatures(renditions=n % 2 == 0, encrypted=n % 2 == 0, fmp4_variant=n % 3 == 0)


@dataclass
class CustomFile:
    """A file a test placed at the origin, overriding the catalog."""

    body: bytes
    content_type: str = PLAYLIST_TYPE
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


class Origin:
    """The catalog plus custom files; thread-safe."""

    def __init__(
        self,
        *,
        videos: int = 3,
        variants: int = 3,
        segments: int = 20,
        signatures: OriginSignatures | None = None,
    ) -> None:
        """``signatures``: demand signed URLs over HTTP (settable later, like a test's limits)."""
        if videos < 0 or variants < 1 or segments < 1:
            raise ValueError("videos >= 0, variants >= 1 and segments >= 1 are required")
        self.videos = videos
        self.variants = variants
        self.segments = segments
        self.signatures = signatures
        self.latency = 0.0  # seconds before every answer: a distant origin (settable)
        self._custom: dict[str, CustomFile] = {}
        self._hidden: set[str] = set()
        # An overload: the next ``_overload[0]`` pulls answer status ``_overload[1]``.
        self._overload = (0, 503)
        self._lock = threading.Lock()

    # -- what the origin holds ------------------------------------------------

    def add_file(
        self,
        path: str,
        body: bytes | str,
        content_type: str = PLAYLIST_TYPE,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Serve ``body`` at ``path`` (may carry ``?query``), over any generated file."""
        data = body.encode() if isinstance(body, str) else body
        with self._lock:
            self._hidden.discard(path)
            self._custom[path] = CustomFile(data, content_type, status, dict(headers or {}))

    def remove(self, path: str) -> None:
        """Make ``path`` missing (404), generated or custom."""
        with self._lock:
            self._custom.pop(path, None)
            self._hidden.add(path)

    def custom(self, path: str) -> CustomFile | None:
        """The custom file at ``path`` (exact, then without the query), if any."""
        with self._lock:
            for key in _candidates(path):
                if key in self._hidden:
                    return None
                if key in self._custom:
                    return self._custom[key]
        return None

    def lookup(self, path: str) -> tuple[bytes, str] | None:
        """``(body, content_type)`` if the origin answers ``path`` with 200, else None.

        Like most origins, an unknown query string is ignored.
        """
        for key in _candidates(path):
            with self._lock:
                if key in self._hidden:
                    return None
                custom = self._custom.get(key)
            if custom is not None:
                return (custom.body, custom.content_type) if custom.status == 200 else None
            generated = self._generate(key)
            if generated is not None:
                return generated
        return None

    def overload(self, pulls: int, status: int = 503) -> None:
        """Answer the next ``pulls`` CDN pulls with ``status`` (a burst the origin cannot take).

        A prefetch of thousands of segments is itself a burst on the origin; an
        origin behind a small pool answers 502/503/504 to part of it, then
        recovers. Only pulls (:meth:`pull_status`) see it, not the HTTP server.
        """
        with self._lock:
            self._overload = (pulls, status)

    def pull_status(self, path: str) -> int:
        """The status a CDN's back-to-origin fetch of ``path`` gets: 200, 404, or an overload's."""
        with self._lock:
            left, status = self._overload
            if left > 0:
                self._overload = (left - 1, status)
                return status
        if self.lookup(path) is not None:
            return 200
        custom = self.custom(path)
        return custom.status if custom is not None else 404

    def has(self, path: str) -> bool:
        """Whether the origin answers ``path`` with 200."""
        return self.lookup(path) is not None

    def video_ids(self) -> list[str]:
        return [f"demo-{n}" for n in range(1, self.videos + 1)]

    def catalog_paths(self, video_id: str) -> list[str]:
        """Every path of one generated video: playlists first, then media."""
        n = self._number(video_id)
        if n is None:
            raise KeyError(video_id)
        base = f"/vod/{video_id}"
        paths = [f"{base}/master.m3u8"]
        media: list[str] = []
        for name in self._renditions(n):
            paths.append(f"{base}/{name}/index.m3u8")
            media.extend(self._media_files(n, name))
        return paths + media

    def dash_catalog_paths(self, video_id: str) -> list[str]:
        """Every path of one video's DASH presentation: the MPD, then its media files."""
        n = self._number(video_id)
        if n is None:
            raise KeyError(video_id)
        base = f"/vod/{video_id}"
        files = _dash_files(dash_mode(n), n % 2 == 0, self.variants, self.segments)
        return [f"{base}/manifest.mpd", *(f"{base}/{name}" for name in files)]

    # -- generation -------------------------------------------------------------

    def _number(self, video_id: str) -> int | None:
        match = re.fullmatch(r"demo-([1-9]\d*)", video_id)
        if match is None or int(match.group(1)) > self.videos:
            return None
        return int(match.group(1))

    def _renditions(self, n: int) -> list[str]:
        names = [f"v{k}" for k in range(self.variants)]
        if VideoFeatures.for_number(n).renditions:
            names += ["audio/en", "subs/en"]
        return names

    def _is_fmp4(self, n: int, rendition: str) -> bool:
        return VideoFeatures.for_number(n).fmp4_variant and rendition == f"v{self.variants - 1}"

    def _media_files(self, n: int, rendition: str) -> list[str]:
        base = f"/vod/demo-{n}/{rendition}"
        ext = _segment_extension(rendition, self._is_fmp4(n, rendition))
        files = [f"{base}/init.mp4"] if ext == "m4s" else []
        files += [f"{base}/seg{i}.{ext}" for i in range(self.segments)]
        if VideoFeatures.for_number(n).encrypted and not rendition.startswith("subs"):
            files += [f"/vod/demo-{n}/keys/k{j}.key" for j in self._key_indexes()]
        return files

    def _key_indexes(self) -> range:
        return range(2 if self.segments > 1 else 1)

    def _generate(self, path: str) -> tuple[bytes, str] | None:
        match = _VIDEO_PATH.match(path)
        if match is None:
            return None
        n = int(match.group("n"))
        if n > self.videos:
            return None
        rest = match.group("rest")
        ext = rest.rsplit(".", 1)[-1]
        if ext not in _CONTENT_TYPES:
            return None
        if rest == "manifest.mpd" or rest.startswith("dash/"):
            return self._dash(n, rest, path, ext)
        text = self._playlist(n, rest) if ext == "m3u8" else None
        if text is not None:
            return text.encode(), PLAYLIST_TYPE
        if ext != "m3u8" and self._has_media(n, rest):
            return _media_body(path, ext), _CONTENT_TYPES[ext]
        return None

    def _dash(self, n: int, rest: str, path: str, ext: str) -> tuple[bytes, str] | None:
        mode, subtitles = dash_mode(n), n % 2 == 0
        if rest == "manifest.mpd":
            text = _dash_manifest(mode, subtitles, self.variants, self.segments)
            return text.encode(), MPD_TYPE
        if rest in _dash_file_set(mode, subtitles, self.variants, self.segments):
            return _media_body(path, ext), _CONTENT_TYPES[ext]
        return None

    def _playlist(self, n: int, rest: str) -> str | None:
        if rest == "master.m3u8":
            return _master_playlist(self.variants, VideoFeatures.for_number(n))
        rendition, _, name = rest.rpartition("/")
        if name != "index.m3u8" or rendition not in self._renditions(n):
            return None
        return _media_playlist(
            rendition,
            self.segments,
            fmp4=self._is_fmp4(n, rendition),
            encrypted=VideoFeatures.for_number(n).encrypted,
        )

    def _has_media(self, n: int, rest: str) -> bool:
        rendition, _, name = rest.rpartition("/")
        if rendition == "keys":
            match = re.fullmatch(r"k(\d+)\.key", name)
            return (
                VideoFeatures.for_number(n).encrypted
                and match is not None
                and int(match.group(1)) in self._key_indexes()
            )
        if rendition not in self._renditions(n):
            return False
        fmp4 = self._is_fmp4(n, rendition)
        if name == "init.mp4":
            return fmp4
        match = re.fullmatch(r"seg(\d+)\.(\w+)", name)
        return (
            match is not None
            and match.group(2) == _segment_extension(rendition, fmp4)
            and int(match.group(1)) < self.segments
        )


def _candidates(path: str) -> list[str]:
    if path.startswith("/") and not path.startswith("//") and "?" not in path and "#" not in path:
        return [path]  # already bare: every finished prefetch asks, so skip the parse
    bare = urlsplit(path).path
    return [path] if bare == path else [path, bare]


def _segment_extension(rendition: str, fmp4: bool) -> str:
    if rendition.startswith("audio"):
        return "aac"
    if rendition.startswith("subs"):
        return "vtt"
    return "m4s" if fmp4 else "ts"


@lru_cache(maxsize=64)
def _master_playlist(variants: int, features: VideoFeatures) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:6", "#EXT-X-INDEPENDENT-SEGMENTS"]
    groups = ""
    if features.renditions:
        lines += [
            '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="English",LANGUAGE="en",'
            'DEFAULT=YES,AUTOSELECT=YES,URI="audio/en/index.m3u8"',
            '#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="English",LANGUAGE="en",'
            'DEFAULT=NO,AUTOSELECT=YES,URI="subs/en/index.m3u8"',
        ]
        groups = ',AUDIO="aud",SUBTITLES="subs"'
    for k in range(variants):
        height = 240 * (k + 1)
        bandwidth = 400_000 * (k + 1)
        lines.append(
            f"#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},RESOLUTION={height * 16 // 9}x{height},"
            f'CODECS="avc1.64001f,mp4a.40.2"{groups}'
        )
        lines.append(f"v{k}/index.m3u8")
    return "\n".join(lines) + "\n"


@lru_cache(maxsize=4096)
def _media_playlist(rendition: str, segments: int, *, fmp4: bool, encrypted: bool) -> str:
    ext = _segment_extension(rendition, fmp4)
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{7 if fmp4 else 3}",
        f"#EXT-X-TARGETDURATION:{SEGMENT_SECONDS}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:VOD",
    ]
    if fmp4:
        lines.append('#EXT-X-MAP:URI="init.mp4"')
    # Subtitles stay clear text; keys sit beside the renditions, reached by "../".
    depth = "../" * rendition.count("/") + "../"
    rotate_at = segments // 2 if segments > 1 else None
    for i in range(segments):
        if encrypted and ext != "vtt" and i in (0, rotate_at):
            j = 0 if i == 0 else 1
            lines.append(f'#EXT-X-KEY:METHOD=AES-128,URI="{depth}keys/k{j}.key",IV=0x{i:032x}')
        lines.append(f"#EXTINF:{SEGMENT_SECONDS}.000,")
        lines.append(f"seg{i}.{ext}")
    lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def dash_mode(n: int) -> str:
    """The DASH addressing of demo-``n``."""
    return DASH_MODES[n % len(DASH_MODES)]


def _dash_representations(variants: int) -> list[tuple[str, str, int]]:
    """(id, content type, bandwidth) of each segmented Representation."""
    reps = [(f"v{k}", "video", 400_000 * (k + 1)) for k in range(variants)]
    return [*reps, ("a0", "audio", 128_000)]


def _period_segments(segments: int) -> list[int]:
    """Segments per Period of the multi-period layout: the first half, then the rest."""
    first = max(segments // 2, 1)
    return [first, segments - first] if segments > 1 else [1]


@lru_cache(maxsize=64)
def _dash_files(mode: str, subtitles: bool, variants: int, segments: int) -> tuple[str, ...]:
    """The media files of a DASH presentation, relative to the video, in playback order."""
    files: list[str] = []
    for rep, _, _ in _dash_representations(variants):
        if mode == "timeline":
            step = SEGMENT_SECONDS * 1000
            files += [f"dash/{rep}/init.mp4"]
            files += [f"dash/{rep}/t{i * step}.m4s" for i in range(segments)]
        elif mode == "duration":
            files += [f"dash/{rep}/init.mp4"]
            files += [f"dash/{rep}/n{i:04d}.m4s" for i in range(1, segments + 1)]
        elif mode == "list":
            files += [f"dash/{rep}/init.mp4"] + [f"dash/{rep}/s{i}.m4s" for i in range(segments)]
        elif mode == "base":
            files.append(f"dash/{rep}/full.mp4")
    if mode == "multiperiod":
        for period, count in enumerate(_period_segments(segments)):
            for rep, _, _ in _dash_representations(variants):
                files += [f"dash/p{period}/{rep}/init.mp4"]
                files += [f"dash/p{period}/{rep}/n{i}.m4s" for i in range(1, count + 1)]
    if subtitles:
        files.append("dash/subs/en.vtt")
    return tuple(files)


@lru_cache(maxsize=64)
def _dash_file_set(mode: str, subtitles: bool, variants: int, segments: int) -> frozenset[str]:
    return frozenset(_dash_files(mode, subtitles, variants, segments))


def _dash_adaptation_sets(mode: str, variants: int, segments: int, count: int, period: str) -> str:
    """The AdaptationSets of one Period (``period``: the path prefix of its files)."""
    out = []
    reps = _dash_representations(variants)
    for content in ("video", "audio"):
        mime = "video/mp4" if content == "video" else "audio/mp4"
        out.append(f'    <AdaptationSet id="{content}" contentType="{content}" mimeType="{mime}"'
                   ' segmentAlignment="true">')  # fmt: skip
        if content == "video":
            # Ignored by expansion: license servers are not preheated.
            out.append('      <ContentProtection schemeIdUri="urn:mpeg:dash:mp4protection:2011"'
                       ' value="cenc"/>')  # fmt: skip
        if mode in ("duration", "multiperiod"):
            number = "$Number%04d$" if mode == "duration" else "$Number$"
            out.append(
                f'      <SegmentTemplate timescale="1000" duration="{SEGMENT_SECONDS * 1000}"'
                f' initialization="{period}$RepresentationID$/init.mp4"'
                f' media="{period}$RepresentationID$/n{number}.m4s" startNumber="1"/>'
            )
        elif mode == "timeline":
            # Video spells every repeat out; audio repeats to the end of the Period (r=-1).
            repeat = segments - 1 if content == "video" else -1
            out += [
                '      <SegmentTemplate timescale="1000" initialization="dash/$RepresentationID$/'
                'init.mp4" media="dash/$RepresentationID$/t$Time$.m4s">',
                "        <SegmentTimeline>",
                f'          <S t="0" d="{SEGMENT_SECONDS * 1000}" r="{repeat}"/>',
                "        </SegmentTimeline>",
                "      </SegmentTemplate>",
            ]
        for rep, kind, bandwidth in reps:
            if kind != content:
                continue
            if mode == "list":
                out += [
                    f'      <Representation id="{rep}" bandwidth="{bandwidth}">',
                    f'        <SegmentList timescale="1000" duration="{SEGMENT_SECONDS * 1000}">',
                    f'          <Initialization sourceURL="dash/{rep}/init.mp4"/>',
                    *(f'          <SegmentURL media="dash/{rep}/s{i}.m4s"/>' for i in range(count)),
                    "        </SegmentList>",
                    "      </Representation>",
                ]
            elif mode == "base":
                out += [
                    f'      <Representation id="{rep}" bandwidth="{bandwidth}">',
                    f"        <BaseURL>dash/{rep}/full.mp4</BaseURL>",
                    '        <SegmentBase indexRange="100-199"><Initialization range="0-99"/>'
                    "</SegmentBase>",
                    "      </Representation>",
                ]
            else:
                out.append(f'      <Representation id="{rep}" bandwidth="{bandwidth}"/>')
        out.append("    </AdaptationSet>")
    return "\n".join(out)


@lru_cache(maxsize=64)
def _dash_manifest(mode: str, subtitles: bool, variants: int, segments: int) -> str:
    total = segments * SEGMENT_SECONDS
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static"'
        f' mediaPresentationDuration="PT{total}S" minBufferTime="PT2S"'
        ' profiles="urn:mpeg:dash:profile:isoff-live:2011">',
    ]
    counts = _period_segments(segments) if mode == "multiperiod" else [segments]
    for period, count in enumerate(counts):
        # The first Period states its duration; the last one's comes from the MPD's.
        duration = f' duration="PT{count * SEGMENT_SECONDS}S"' if period < len(counts) - 1 else ""
        lines.append(f'  <Period id="p{period}"{duration}>')
        prefix = f"dash/p{period}/" if mode == "multiperiod" else "dash/"
        lines.append(_dash_adaptation_sets(mode, variants, segments, count, prefix))
        if subtitles and period == 0:
            lines += [
                '    <AdaptationSet id="subs" contentType="text" mimeType="text/vtt" lang="en">',
                '      <Representation id="subs-en" bandwidth="256">',
                "        <BaseURL>dash/subs/en.vtt</BaseURL>",
                "      </Representation>",
                "    </AdaptationSet>",
            ]
        lines.append("  </Period>")
    lines.append("</MPD>")
    return "\n".join(lines) + "\n"


def _media_body(path: str, ext: str) -> bytes:
    digest = hashlib.blake2b(path.encode(), digest_size=16).digest()
    if ext == "key":
        return digest
    if ext == "vtt":
        return f"WEBVTT\n\n00:00.000 --> 00:0{SEGMENT_SECONDS}.000\n{path}\n".encode()
    if ext == "ts":
        return b"\x47" + digest + path.encode()  # 0x47: the MPEG-TS sync byte
    return digest + path.encode()


# -- HTTP --------------------------------------------------------------------------


def parse_range(header: str | None, size: int) -> tuple[int, int] | bool | None:
    """``(first, last)`` of a single ``bytes=`` range; None if absent; False if unsatisfiable."""
    if not header:
        return None
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if match is None or match.group(1) == match.group(2) == "":
        return None  # multi-range or malformed: answer the whole body, as RFC 9110 allows
    first_text, last_text = match.groups()
    if first_text == "":
        first, last = max(size - int(last_text), 0), size - 1
    else:
        first = int(first_text)
        last = min(int(last_text), size - 1) if last_text else size - 1
    if first >= size or first > last:
        return False
    return first, last


def send_body(
    handler: BaseHTTPRequestHandler,
    body: bytes,
    content_type: str,
    extra_headers: dict[str, str] | list[tuple[str, str]] | None = None,
) -> None:
    """Answer 200, 206 or 416 for ``body``, honouring ``Range``; no body on HEAD.

    ``extra_headers`` as a list of pairs may repeat a name (one line per value).
    """
    span = parse_range(handler.headers.get("Range"), len(body))
    if span is False:
        handler.send_response(416)
        handler.send_header("Content-Range", f"bytes */{len(body)}")
        handler.send_header("Content-Length", "0")
        handler.end_headers()
        return
    status, payload = 200, body
    if isinstance(span, tuple):
        first, last = span
        status, payload = 206, body[first : last + 1]
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(payload)))
    handler.send_header("Accept-Ranges", "bytes")
    if isinstance(span, tuple):
        handler.send_header("Content-Range", f"bytes {span[0]}-{span[1]}/{len(body)}")
    pairs = extra_headers.items() if isinstance(extra_headers, dict) else extra_headers or []
    for name, value in pairs:
        handler.send_header(name, value)
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(payload)


def send_not_found(
    handler: BaseHTTPRequestHandler, extra_headers: dict[str, str] | None = None
) -> None:
    send_text(handler, 404, "not found\n", extra_headers)


def send_text(
    handler: BaseHTTPRequestHandler,
    status: int,
    text: str,
    extra_headers: dict[str, str] | None = None,
) -> None:
    body = text.encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "text/plain")
    handler.send_header("Content-Length", str(len(body)))
    for name, value in (extra_headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)


class OriginHandler(BaseHTTPRequestHandler):
    """GET/HEAD with Range; custom files keep their status and headers."""

    protocol_version = "HTTP/1.1"
    server_version = "cdn-preheat-sandbox-origin"
    # Headers and body go out in two writes; with Nagle on, the body waits for
    # the client's delayed ACK (40 ms on Linux) on every keep-alive request.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        origin: Origin = self.server.app  # type: ignore[attr-defined]
        if origin.latency:
            time.sleep(origin.latency)
        signatures = origin.signatures
        denial = signatures.denial(self.headers.get("Host", ""), self.path) if signatures else None
        if denial is not None:
            send_text(self, denial.status, f"{denial.reason}\n")
            return
        custom = origin.custom(self.path)
        if custom is not None and custom.status != 200:
            self.send_response(custom.status)
            for name, value in custom.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", custom.content_type)
            self.send_header("Content-Length", str(len(custom.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(custom.body)
            return
        found = origin.lookup(self.path)
        if found is None:
            send_not_found(self)
            return
        send_body(self, found[0], found[1], custom.headers if custom else None)

    do_HEAD = do_GET

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: tests and the CLI own the terminal."""


def serve_origin(origin: Origin, port: int = 0) -> LoopbackServer:
    """Start the origin's HTTP server on 127.0.0.1."""
    return LoopbackServer(OriginHandler, origin, port).start()
