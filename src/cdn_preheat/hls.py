"""Expand an HLS playlist into every URL a player may request.

Three steps, kept apart: :func:`fetch_playlist` is the only network I/O;
:func:`parse_playlist` turns text into references (``m3u8`` does the
parsing); the expander resolves references with :mod:`cdn_preheat.urlresolve`
and orders them: playlists first (master, then renditions in the order the
master lists them), then each rendition's keys, init sections and segments in
playback order, each URL once.
"""

from __future__ import annotations

import asyncio
import math
import re
import threading
import zlib
from array import array
from collections.abc import (
    AsyncIterator,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, TypeVar, overload
from urllib.parse import parse_qsl, urlsplit

import httpx
import m3u8
import m3u8.parser
from m3u8.parser import ATTRIBUTELISTPATTERN, remove_quotes

from cdn_preheat import __version__
from cdn_preheat.errors import PlaylistError
from cdn_preheat.redact import strip_userinfo
from cdn_preheat.retrying import doubling, retry_async
from cdn_preheat.urlresolve import HostMap, Resolver, UnusableUrl, parse_url

K = TypeVar("K")


class UrlKind(StrEnum):
    PLAYLIST = "playlist"
    SEGMENT = "segment"
    INIT = "init"
    KEY = "key"
    PART = "part"


@dataclass(frozen=True, slots=True)
class ExpandedUrl:
    """One URL to preheat.

    ``rendition`` is the media playlist the URL belongs to (a playlist's own
    URL for playlists and master-level keys). ``index`` is the segment's
    position in its playlist (-1 for anything but segments).
    """

    url: str
    kind: UrlKind
    rendition: str
    index: int
    duration: float | None


@dataclass(frozen=True, slots=True)
class SkippedUrl:
    """A URL a player may request that is not preheated, and why."""

    url: str
    reason: str


@dataclass
class Expansion:
    """Everything one source playlist expands to.

    ``warnings``: malformed tags that were read as absent, as players do.
    ``failed``: renditions that could not be fetched or read, skipped (the
    video is partial); with ``ExpandOptions.strict`` they fail the video instead.
    """

    source: str
    urls: Sequence[ExpandedUrl]
    skipped: list[SkippedUrl]
    live_playlists: list[str]
    warnings: list[str] = field(default_factory=list)
    failed: list[PlaylistError] = field(default_factory=list)

    @property
    def is_partial(self) -> bool:
        return bool(self.failed)

    @property
    def is_live(self) -> bool:
        return bool(self.live_playlists)


@dataclass(frozen=True)
class ExpandOptions:
    """How to fetch and map. ``sign_url`` signs fetches; output stays unsigned."""

    cdn_host: str | None = None
    allow_foreign_hosts: bool = False
    max_depth: int = 4
    max_bytes: int = 16 * 1024 * 1024
    timeout: float = 15.0  # seconds: connect, and each read (httpx's per-operation timeout)
    deadline: float = 60.0  # seconds for one playlist, retries included, however it trickles
    concurrency: int = 16
    retries: int = 3
    sign_url: Callable[[str], str] | None = None
    retry_backoff: float = 0.25  # seconds before the first retry, doubled after each
    max_urls_per_video: int = 200_000  # CDN_PREHEAT_MAX_URLS_PER_VIDEO
    strict: bool = False  # a malformed tag or a failing rendition fails the whole video
    dash_all_base_urls: bool = False  # every alternative BaseURL of an MPD, not the first
    # Makes the transport of each client (the service's SSRF guard, service/ssrf.py);
    # None: httpx's own.
    transport: Callable[[], httpx.AsyncBaseTransport] | None = None
    # Ends retry backoffs at once when set (None: the process-wide stopping.STOP).
    stop: threading.Event | None = None


def make_client(
    options: ExpandOptions, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """A pooled client that follows redirects and accepts gzip.

    ``transport`` (or one from ``options.transport``): the service's guarded one
    (``service/ssrf.py``), which then holds the connection limits.
    """
    if transport is None and options.transport is not None:
        transport = options.transport()
    return httpx.AsyncClient(
        transport=transport,
        follow_redirects=True,
        timeout=httpx.Timeout(options.timeout),
        limits=httpx.Limits(
            max_connections=options.concurrency, max_keepalive_connections=options.concurrency
        ),
        headers={"User-Agent": f"cdn-preheat/{__version__}", "Accept-Encoding": ACCEPT_ENCODING},
    )


# --------------------------------------------------------------------------- fetch


@dataclass(frozen=True, slots=True)
class FetchedPlaylist:
    """A playlist body and where it came from."""

    url: str  # as requested, unsigned
    base_url: str  # what relative references resolve against: the final URL
    redirected: bool
    text: str


_RETRYABLE = (httpx.TimeoutException, httpx.TransportError)


async def fetch_playlist(
    client: httpx.AsyncClient, url: str, options: ExpandOptions
) -> FetchedPlaylist:
    """GET a playlist with retries, a size cap, content checks and a total deadline.

    httpx's timeout bounds each connect and each read; an origin that sends a
    byte now and then never trips it, so the whole fetch, retries and backoff
    included, must also end within ``options.deadline``.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + options.deadline
    try:
        async with asyncio.timeout_at(deadline):
            return await _fetch_with_retries(client, url, options)
    except TimeoutError:
        raise PlaylistError(
            url,
            f"timed out: no complete answer within the {options.deadline:g} s deadline"
            " (CDN_PREHEAT_FETCH_DEADLINE)",
        ) from None


class _RetryableFetch(Exception):
    """A 5xx answer or a transport failure: worth another try (``failure`` describes it)."""

    def __init__(self, failure: str) -> None:
        super().__init__(failure)
        self.failure = failure


async def _fetch_with_retries(
    client: httpx.AsyncClient, url: str, options: ExpandOptions
) -> FetchedPlaylist:
    """Up to ``retries + 1`` tries, ``retry_backoff`` doubling between them (a tenacity
    policy whose backoff ends at once when :data:`stopping.STOP` or ``options.stop`` is set)."""
    target = options.sign_url(url) if options.sign_url is not None else url
    made = 0

    async def attempt() -> FetchedPlaylist:
        nonlocal made
        made += 1
        try:
            async with client.stream("GET", target) as response:
                status = response.status_code
                if status >= 500:
                    raise _RetryableFetch(f"HTTP {status}")
                if not 200 <= status < 300:
                    raise PlaylistError(url, f"HTTP {status} {response.reason_phrase}".rstrip())
                body = await _read_capped(response, url, options.max_bytes)
                redirected = bool(response.history)
                # Without a redirect the unsigned URL is the base, so a
                # signature never leaks into resolved URLs.
                base_url = str(response.url) if redirected else url
                content_type = response.headers.get("content-type", "")
        except _RETRYABLE as exc:
            raise _RetryableFetch(_describe_transport_error(exc)) from None
        except httpx.HTTPError as exc:
            raise PlaylistError(url, f"fetch failed ({type(exc).__name__}: {exc})") from None
        return FetchedPlaylist(url, base_url, redirected, decode_playlist(url, body, content_type))

    try:
        return await retry_async(
            attempt,
            attempts=options.retries + 1,
            retry_on=_RetryableFetch,
            wait=doubling(options.retry_backoff),
            stop=options.stop,
        )
    except _RetryableFetch as exc:
        raise PlaylistError(url, f"{exc.failure} after {made} attempt{'s' * (made > 1)}") from None


# Decoded here, not by httpx: its decoders inflate each network chunk whole, and
# 64 KiB of gzip can inflate to 64 MiB before any cap is checked. zlib's
# max_length bounds every step instead. Only what is asked for is accepted.
ACCEPT_ENCODING = "gzip, deflate"
_DECODE_STEP = 64 * 1024  # bytes inflated at a time


async def _read_capped(response: httpx.Response, url: str, max_bytes: int) -> bytes:
    """The body, decoded; PlaylistError as soon as it passes ``max_bytes``, raw or decoded."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise PlaylistError(url, f"response is {declared} bytes, over the {max_bytes}-byte cap")
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        decoder = None
    elif encoding in ("gzip", "x-gzip"):
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif encoding == "deflate":
        decoder = zlib.decompressobj()  # RFC 9110: deflate is zlib-wrapped
    else:
        raise PlaylistError(url, f"unsupported Content-Encoding {encoding!r}")
    over = f"response is over the {max_bytes}-byte cap (decoded)"
    chunks: list[bytes] = []
    total = 0
    try:
        async for raw in response.aiter_raw():
            if decoder is None:
                total += len(raw)
                if total > max_bytes:
                    raise PlaylistError(url, over)
                chunks.append(raw)
                continue
            pending = raw
            while pending and not decoder.eof:
                piece = decoder.decompress(pending, _DECODE_STEP)
                total += len(piece)
                if total > max_bytes:
                    raise PlaylistError(url, over)
                chunks.append(piece)
                pending = decoder.unconsumed_tail
    except zlib.error as exc:
        raise PlaylistError(url, f"body does not decode as {encoding} ({exc})") from None
    if decoder is not None and not decoder.eof:
        raise PlaylistError(url, f"{encoding} body ends early (truncated)")
    return b"".join(chunks)


def _describe_transport_error(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    detail = str(exc)
    return f"connection failed ({type(exc).__name__}{': ' + detail if detail else ''})"


def decode_playlist(url: str, body: bytes, content_type: str = "") -> str:
    """The body as text, or PlaylistError when it is neither HLS nor a DASH MPD."""
    if b"\x00" in body:
        raise PlaylistError(url, "binary body, not a playlist")
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PlaylistError(url, "body is not UTF-8 text, not a playlist") from None
    head = text.lstrip()
    if not head.startswith("#EXTM3U"):
        from cdn_preheat.dash import looks_like_mpd

        if looks_like_mpd(head, content_type):
            return text  # _Expander hands it to cdn_preheat.dash
        if "html" in content_type.lower() or "<html" in head[:4096].lower():
            raise PlaylistError(url, "got an HTML page, not a playlist")
        raise PlaylistError(url, "does not start with #EXTM3U, not a playlist")
    return text


# --------------------------------------------------------------------------- parse

_HLS_START = re.compile(r"\s*#EXTM3U")
_VARIABLE_REFERENCE = re.compile(r"\{\$([A-Za-z0-9_-]+)\}")
_QUOTED_STRING = re.compile(r'"[^"]*"')


def attributes(tag_line: str) -> dict[str, str]:
    """A tag's attribute list as ``{NAME: value}``, quotes removed."""
    _, _, attribute_list = tag_line.partition(":")
    result: dict[str, str] = {}
    for pair in ATTRIBUTELISTPATTERN.split(attribute_list)[1::2]:
        name, _, value = pair.partition("=")
        result[name.strip().upper()] = remove_quotes(value.strip())
    return result


def substitute_variables(
    text: str, url: str, imported: Mapping[str, str]
) -> tuple[str, dict[str, str]]:
    """Apply ``EXT-X-DEFINE`` to URI lines and quoted attribute values.

    Returns the new text and the variables defined, which media playlists may
    ``IMPORT``. ``QUERYPARAM`` reads ``url``'s query.
    """
    if "#EXT-X-DEFINE" not in text:
        return text, {}
    variables: dict[str, str] = {}

    def value_of(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in variables:
            raise PlaylistError(url, f"variable {{${name}}} is used but not defined")
        return variables[name]

    def substitute_quoted(match: re.Match[str]) -> str:
        return _VARIABLE_REFERENCE.sub(value_of, match.group(0))

    lines = text.splitlines()
    for number, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("#EXT-X-DEFINE:"):
            _define(attributes(stripped), variables, url, imported)
        elif "{$" not in line:
            continue
        elif stripped.startswith("#"):
            lines[number] = _QUOTED_STRING.sub(substitute_quoted, line)
        else:
            lines[number] = _VARIABLE_REFERENCE.sub(value_of, line)
    return "\n".join(lines), variables


def _define(
    definition: dict[str, str], variables: dict[str, str], url: str, imported: Mapping[str, str]
) -> None:
    if "NAME" in definition:
        variables[definition["NAME"]] = definition.get("VALUE", "")
    elif "QUERYPARAM" in definition:
        name = definition["QUERYPARAM"]
        query = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
        if name not in query:
            raise PlaylistError(url, f"EXT-X-DEFINE QUERYPARAM {name} is not in the URL's query")
        variables[name] = query[name]
    elif "IMPORT" in definition:
        name = definition["IMPORT"]
        if name not in imported:
            raise PlaylistError(url, f"EXT-X-DEFINE IMPORT {name} is not defined by the parent")
        variables[name] = imported[name]
    else:
        raise PlaylistError(url, "EXT-X-DEFINE without NAME, QUERYPARAM or IMPORT")


class _TagRecorder:
    """Notes, in file order, what the ``m3u8`` parse data loses or should not keep.

    ``segment.key`` holds only the last of several ``EXT-X-KEY`` tags, the
    master's lists are split by tag type, ``preload_hint`` keeps only the last
    hint, and interstitial assets are not modelled at all. ``m3u8`` calls this
    on every tag line before parsing it; each call hands the segments
    completed since the last one to ``sink`` and empties the parser's list, so
    a playlist of any length never holds more than one segment's dict.
    """

    __slots__ = ("ignored", "renditions", "segments_seen", "sink", "state")

    def __init__(self, sink: _Sink) -> None:
        self.sink = sink
        self.segments_seen = 0
        self.renditions: list[tuple[str, int]] = []  # (parse data list, position in it)
        self.ignored: list[tuple[str, str]] = []  # (URI, why it is not preheated)
        self.state: dict[str, Any] | None = None  # the parser's state, for _PlaylistLines

    def drain(self, data: dict[str, Any]) -> None:
        segments = data["segments"]
        if segments:
            for segment in segments:
                self.sink.segment(segment, self.segments_seen)
                self.segments_seen += 1
            segments.clear()

    def __call__(self, line: str, lineno: int, data: dict[str, Any], state: Any) -> bool:
        # Returning False lets m3u8 parse the line as usual.
        self.state = state
        self.drain(data)
        if not line.startswith("#EXT-X-"):
            return False
        tag = line[7 : line.find(":")] if ":" in line else ""
        if tag == "KEY":
            found = attributes(line)
            if "METHOD" not in found:
                raise PlaylistError(self.sink.url, f"line {lineno}: EXT-X-KEY lacks METHOD")
            if found.get("URI"):
                self.sink.key(found["URI"])
        elif tag in _MASTER_LISTS:
            self.renditions.append((_MASTER_LISTS[tag], len(data[_MASTER_LISTS[tag]])))
        elif tag in _IGNORED_TAGS:
            found = attributes(line)
            for name, reason in _IGNORED_TAGS[tag]:
                if found.get(name):
                    self.ignored.append((found[name], reason))
        return False


_MASTER_LISTS = {
    "STREAM-INF": "playlists",
    "MEDIA": "media",
    "I-FRAME-STREAM-INF": "iframe_playlists",
    "IMAGE-STREAM-INF": "image_playlists",
}

# Players fetch these with per-session parameters, or the origin holds the
# request until new media exists: prefetching them is wasted quota.
_IGNORED_TAGS = {
    "DATERANGE": (("X-ASSET-URI", "interstitial asset"), ("X-ASSET-LIST", "interstitial list")),
    "CONTENT-STEERING": (("SERVER-URI", "content steering manifest"),),
    "SESSION-DATA": (("URI", "session data"),),
    "PRELOAD-HINT": (("URI", "preload hint"),),
    "RENDITION-REPORT": (("URI", "rendition report"),),
}


def _integer_or_decimal(value: str) -> int:
    return int(float(value))


# Values m3u8 6.0's parser casts (m3u8/parser.py: _parse_simple_parameter with
# cast_to=int, cast_date_time, and each _parse_* attribute_parser). A value
# that does not cast makes m3u8 raise and lose the whole playlist; hls.js
# (src/loader/m3u8-parser.ts) reads such a tag as absent and goes on. None of
# these tags carries a URL, so the line (or the attribute) is dropped with a
# warning and the playlist goes on.
_SIMPLE_CASTS: dict[str, Callable[[str], object]] = {
    "EXT-X-TARGETDURATION": lambda value: int(value.strip().lower()),
    "EXT-X-MEDIA-SEQUENCE": lambda value: int(value.strip().lower()),
    "EXT-X-DISCONTINUITY-SEQUENCE": lambda value: int(value.strip().lower()),
    "EXT-X-VERSION": lambda value: int(value.strip().lower()),
    "EXT-X-BITRATE": lambda value: int(value.strip().lower()),
    "EXT-X-PROGRAM-DATE-TIME": m3u8.parser.cast_date_time,
}
_ATTRIBUTE_CASTS: dict[str, dict[str, Callable[[str], object]]] = {
    "EXT-X-STREAM-INF": {
        "PROGRAM-ID": int,
        "BANDWIDTH": _integer_or_decimal,
        "AVERAGE-BANDWIDTH": int,
        "FRAME-RATE": float,
    },
    "EXT-X-I-FRAME-STREAM-INF": {"PROGRAM-ID": int, "BANDWIDTH": int, "AVERAGE-BANDWIDTH": int},
    "EXT-X-IMAGE-STREAM-INF": {"PROGRAM-ID": int, "BANDWIDTH": int, "AVERAGE-BANDWIDTH": int},
    "EXT-X-TILES": {"DURATION": float},
    "EXT-X-START": {"TIME-OFFSET": float},
    "EXT-X-SERVER-CONTROL": {"HOLD-BACK": float, "PART-HOLD-BACK": float, "CAN-SKIP-UNTIL": float},
    "EXT-X-PART-INF": {"PART-TARGET": float},
    "EXT-X-RENDITION-REPORT": {"LAST-MSN": int, "LAST-PART": int},
    "EXT-X-SKIP": {"SKIPPED-SEGMENTS": int},
    "EXT-X-PRELOAD-HINT": {"BYTERANGE-START": int, "BYTERANGE-LENGTH": int},
    "EXT-X-DATERANGE": {"DURATION": float, "PLANNED-DURATION": float},
    "EXT-X-PART": {"DURATION": float},
}
_LINE = re.compile(r"[^\r\n]+")
MAX_WARNINGS = 10  # per playlist; the rest are counted
_MAX_SHOWN = 60  # characters of a bad value quoted in a warning


def _shown(value: str) -> str:
    value = value.strip()
    return repr(value if len(value) <= _MAX_SHOWN else value[:_MAX_SHOWN] + "...")


class _PlaylistLines:
    """The playlist's lines as hls.js reads them, one at a time, for ``m3u8.parser.parse``.

    m3u8 6.0 reads its input as ``content.strip().splitlines()``
    (m3u8/parser.py ``string_to_lines``): handed this object, it iterates
    lines as they are needed, so no list of every line exists. On the way:

    - a URI line with no ``#EXTINF`` before it is a segment, as hls.js
      requests it (m3u8 drops it): an ``#EXTINF:0,`` is put in front;
    - a tag value m3u8 cannot cast (see ``_SIMPLE_CASTS``) is dropped with a
      warning, or, with ``strict``, fails the playlist as before.

    ``lineno`` is the line m3u8 is parsing, for errors it raises itself.
    """

    def __init__(self, text: str, url: str, recorder: _TagRecorder, strict: bool) -> None:
        self.text = text
        self.url = url
        self.recorder = recorder
        self.strict = strict
        self.lineno = 0
        self.warnings: list[str] = []
        self.unshown = 0

    def strip(self) -> _PlaylistLines:
        return self

    def splitlines(self) -> Iterator[str]:
        recorder = self.recorder
        for lineno, match in enumerate(_LINE.finditer(self.text), start=1):
            self.lineno = lineno
            line = match.group().strip()
            if not line:
                continue
            if line[0] != "#":
                state = recorder.state
                if state is not None and not (state["expect_segment"] or state["expect_playlist"]):
                    yield "#EXTINF:0,"
                yield line
            elif line.startswith("#EXTINF:"):
                duration, comma, title = line[8:].partition(",")
                try:
                    float(duration)
                except ValueError:
                    self._malformed(f"#EXTINF duration {_shown(duration)} is not a number")
                    line = f"#EXTINF:0,{title}" if comma else "#EXTINF:0,"
                yield line
            elif line.startswith("#EXT-X-"):
                checked = self._checked(line)
                if checked is not None:
                    yield checked
            else:
                yield line

    def _checked(self, line: str) -> str | None:
        tag, colon, value = line[1:].partition(":")
        cast = _SIMPLE_CASTS.get(tag)
        if cast is not None:
            try:
                cast(value)
            except ValueError:
                self._malformed(f"{tag} value {_shown(value)} is not valid")
                return None
            return line
        casts = _ATTRIBUTE_CASTS.get(tag)
        if casts is None or not colon:
            return line
        kept = []
        for pair in ATTRIBUTELISTPATTERN.split(value)[1::2]:
            name, _, raw = pair.partition("=")
            attribute_cast = casts.get(name.strip().upper())
            if attribute_cast is not None:
                try:
                    attribute_cast(raw)
                except ValueError:
                    self._malformed(f"{tag} {name.strip()}={_shown(raw)} is not a number")
                    continue
            kept.append(pair)
        if tag == "EXT-X-STREAM-INF" and not any(
            pair.partition("=")[0].strip().upper() == "BANDWIDTH" for pair in kept
        ):
            self._malformed("EXT-X-STREAM-INF has no BANDWIDTH")
        return f"#{tag}:{','.join(kept)}"

    def _malformed(self, what: str) -> None:
        message = f"line {self.lineno}: {what}"
        if self.strict:
            raise PlaylistError(self.url, f"malformed playlist: {message}")
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(message)
        else:
            self.unshown += 1

    def all_warnings(self) -> list[str]:
        """The warnings kept, and how many more there were: one bad packager can fill a log."""
        more = [f"and {self.unshown:,} more malformed tags"] if self.unshown else []
        return [*self.warnings, *more]


class _Sink(Protocol):
    """Receives a media playlist's keys and segments in file order, as they are parsed."""

    url: str

    def key(self, uri: str) -> None: ...

    def segment(self, segment: Mapping[str, Any], index: int) -> None: ...


class _CollectingSink:
    """Keeps what it receives: for callers that want the parse alone."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.keys: list[tuple[int, str]] = []
        self.segments: list[Mapping[str, Any]] = []

    def key(self, uri: str) -> None:
        self.keys.append((len(self.segments), uri))

    def segment(self, segment: Mapping[str, Any], index: int) -> None:
        self.segments.append(segment)


@dataclass(frozen=True)
class ParsedPlaylist:
    """The references in one playlist, in file order.

    ``keys`` and ``segments`` are filled when no sink was given to
    :func:`parse_playlist`; with a sink, the sink received them instead.
    """

    is_master: bool
    is_live: bool
    renditions: list[str]  # master: every playlist URI, as listed
    keys: list[tuple[int, str]]  # (index of the first segment it applies to, URI)
    segments: Sequence[Mapping[str, Any]]  # m3u8's parsed segment dicts (uri, duration, ...)
    ignored: list[tuple[str, str]]
    warnings: list[str] = field(default_factory=list)  # malformed tags read as absent


def parse_playlist(
    text: str, url: str, base_url: str, *, sink: _Sink | None = None, strict: bool = False
) -> ParsedPlaylist:
    """Parse with ``m3u8``; PlaylistError names ``url`` when it fails or yields nothing.

    The parser's data is read directly (``m3u8.parser.parse``): the ``M3U8``
    model on top builds an object per segment and refuses a variant without
    BANDWIDTH, which players accept. Segments stream to ``sink`` as they are
    parsed; without one they are collected into the result.
    """
    collector = _CollectingSink(url) if sink is None else None
    recorder = _TagRecorder(sink if sink is not None else collector)  # type: ignore[arg-type]
    lines = _PlaylistLines(text, url, recorder, strict)
    try:
        data = m3u8.parser.parse(lines, custom_tags_parser=recorder)
        recorder.drain(data)
    except PlaylistError:
        raise
    except KeyError as exc:
        # m3u8 indexes required attributes directly, e.g. an I-FRAME-STREAM-INF without URI.
        name = str(exc.args[0]) if exc.args else ""
        where = f" on line {lines.lineno}"
        if not re.fullmatch(r"[a-z_]+", name):
            raise PlaylistError(url, f"malformed playlist (KeyError: {name}){where}") from None
        missing = name.upper().replace("_", "-")
        raise PlaylistError(url, f"malformed playlist: a tag lacks {missing}{where}") from None
    except Exception as exc:  # m3u8 raises bare ValueError/TypeError/IndexError on bad input
        raise PlaylistError(
            url, f"malformed playlist ({type(exc).__name__}: {exc}) on line {lines.lineno}"
        ) from None

    renditions = []
    for list_name, position in recorder.renditions:
        entries = data[list_name]
        if position < len(entries) and entries[position].get("uri"):
            renditions.append(entries[position]["uri"])
    keys: list[tuple[int, str]] = collector.keys if collector is not None else []
    if renditions:
        keys = [(0, key["uri"]) for key in data["session_keys"] if key and key.get("uri")]
    elif not recorder.segments_seen:
        # Lowercase or unknown tags parse to nothing; that is not an empty video.
        raise PlaylistError(url, "no segments or variant streams found, not an HLS playlist")
    return ParsedPlaylist(
        is_master=bool(renditions),
        is_live=not renditions and not data["is_endlist"],
        renditions=renditions,
        keys=keys,
        segments=collector.segments if collector is not None else (),
        ignored=recorder.ignored,
        warnings=lines.all_warnings(),
    )


# --------------------------------------------------------------------------- expand

_KINDS = list(UrlKind)
_KIND_CODE = {kind: code for code, kind in enumerate(_KINDS)}


class UrlList(Sequence[ExpandedUrl]):
    """ExpandedUrls stored compactly: the URL strings plus about 21 bytes each.

    An object per URL (ExpandedUrl, its int and float) cost ~120 bytes beyond
    the URL; a 700,000-segment video is held here in a few parallel arrays,
    and an ExpandedUrl is made only when one is read.
    """

    __slots__ = ("_durations", "_indexes", "_kinds", "_rendition_names", "_renditions", "_urls")

    def __init__(self, items: Iterable[ExpandedUrl] = ()) -> None:
        self._urls: list[str] = []
        self._kinds = bytearray()
        self._indexes = array("i")
        self._durations = array("d")  # NaN: no duration
        self._renditions = array("I")
        self._rendition_names: dict[str, int] = {}
        for item in items:
            self.append(item.url, item.kind, item.rendition, item.index, item.duration)

    def append(
        self, url: str, kind: UrlKind, rendition: str, index: int, duration: float | None
    ) -> None:
        self._urls.append(url)
        self._kinds.append(_KIND_CODE[kind])
        self._indexes.append(index)
        self._durations.append(math.nan if duration is None else duration)
        code = self._rendition_names.setdefault(rendition, len(self._rendition_names))
        self._renditions.append(code)

    def take_unique(self, other: UrlList, seen: set[str]) -> None:
        """Append ``other``'s entries whose URL is not in ``seen`` (adding them), then empty it."""
        codes = [
            self._rendition_names.setdefault(name, len(self._rendition_names))
            for name in other._rendition_names
        ]
        for position, url in enumerate(other._urls):
            if url in seen:
                continue
            seen.add(url)
            self._urls.append(url)
            self._kinds.append(other._kinds[position])
            self._indexes.append(other._indexes[position])
            self._durations.append(other._durations[position])
            self._renditions.append(codes[other._renditions[position]])
        other.clear()

    def strip_userinfo(self) -> None:
        """Drop ``user:password@`` from every URL, in place."""
        for position, url in enumerate(self._urls):
            if "@" in url:
                self._urls[position] = strip_userinfo(url)
        if any("@" in name for name in self._rendition_names):
            self._rendition_names = {
                strip_userinfo(name): code for name, code in self._rendition_names.items()
            }

    def clear(self) -> None:
        self._urls = []
        self._kinds = bytearray()
        self._indexes = array("i")
        self._durations = array("d")
        self._renditions = array("I")

    @property
    def urls(self) -> list[str]:
        return self._urls

    def __len__(self) -> int:
        return len(self._urls)

    @overload
    def __getitem__(self, position: int) -> ExpandedUrl: ...

    @overload
    def __getitem__(self, position: slice) -> list[ExpandedUrl]: ...

    def __getitem__(self, position: int | slice) -> ExpandedUrl | list[ExpandedUrl]:
        if isinstance(position, slice):
            return [self[n] for n in range(*position.indices(len(self)))]
        duration = self._durations[position]
        names = list(self._rendition_names)
        return ExpandedUrl(
            self._urls[position],
            _KINDS[self._kinds[position]],
            names[self._renditions[position]],
            self._indexes[position],
            None if math.isnan(duration) else duration,
        )

    def __iter__(self) -> Iterator[ExpandedUrl]:
        names = list(self._rendition_names)
        kinds = _KINDS
        for url, kind, index, duration, rendition in zip(
            self._urls, self._kinds, self._indexes, self._durations, self._renditions, strict=True
        ):
            yield ExpandedUrl(
                url,
                kinds[kind],
                names[rendition],
                index,
                None if math.isnan(duration) else duration,
            )

    def __eq__(self, other: object) -> bool:
        if isinstance(other, UrlList | list | tuple):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        # Bounded: asyncio reprs a finished task's result, and a full repr of a
        # 700,000-URL video would cost more memory than the video itself.
        shown = ", ".join(repr(url) for url in self._urls[:3])
        more = f", ... ({len(self):,} URLs)" if len(self) > 3 else ""
        return f"UrlList([{shown}{more}])"


class UrlLimitExceeded(PlaylistError):
    """A video lists more URLs than ``ExpandOptions.max_urls_per_video``."""


class _MediaSink:
    """Resolves a media playlist's keys, init sections, parts and segments as they are parsed.

    Consecutive repeats of one URL (byte ranges of one file) give one entry.
    """

    def __init__(
        self,
        url: str,
        resolver: Resolver,
        rendition: str,
        skip: Callable[[str, str], None],
        out: UrlList,
        budget: _UrlBudget,
    ) -> None:
        self.url = url
        self.resolver = resolver
        self.output = resolver.output
        self.rendition = rendition
        self.skip = skip
        self.out = out
        self.budget = budget
        self.last_init: str | None = None
        self.last_url = ""

    def _add(self, ref: str, kind: UrlKind, index: int = -1, duration: float | None = None) -> None:
        try:
            url = self.output(ref)
        except UnusableUrl as exc:
            self.skip(exc.url, exc.reason)
            return
        if url != self.last_url:
            self.budget.take(self.url)
            self.out.append(url, kind, self.rendition, index, duration)
            self.last_url = url

    def key(self, uri: str) -> None:
        self._add(uri, UrlKind.KEY)

    def segment(self, segment: Mapping[str, Any], index: int) -> None:
        init = segment.get("init_section")
        if init is not None:
            if not init.get("uri"):
                raise PlaylistError(self.url, "malformed playlist: EXT-X-MAP lacks URI")
            if init["uri"] != self.last_init:
                self.last_init = init["uri"]
                self._add(init["uri"], UrlKind.INIT)
        for part in segment.get("parts", ()):
            if not part.get("uri") or "duration" not in part:
                reason = "malformed playlist: EXT-X-PART lacks URI or DURATION"
                raise PlaylistError(self.url, reason)
            if part.get("gap") == "YES":
                self.skip(_describe(self.resolver, part["uri"]), "gap part")
            else:
                self._add(part["uri"], UrlKind.PART)
        uri = segment.get("uri")
        if uri is None:  # parts of a segment still being written
            return
        if segment.get("gap_tag"):
            self.skip(_describe(self.resolver, uri), "gap segment")
            return
        self._add(uri, UrlKind.SEGMENT, index, segment.get("duration"))


class _UrlBudget:
    """Counts a video's URLs against the limit, so a huge playlist fails early and clearly."""

    def __init__(self, source: str, limit: int) -> None:
        self.source = source
        self.limit = limit
        self.used = 0

    def take(self, playlist: str) -> None:
        self.used += 1
        if self.used > self.limit:
            raise UrlLimitExceeded(
                playlist,
                f"video {self.source} lists more than {self.limit:,} URLs"
                " (CDN_PREHEAT_MAX_URLS_PER_VIDEO); nothing of it was queued",
            )


def media_urls(
    playlist: ParsedPlaylist,
    resolver: Resolver,
    rendition: str,
    skip: Callable[[str, str], None],
) -> UrlList:
    """Keys, init sections, parts and segments of a parsed media playlist in playback order."""
    out = UrlList()
    sink = _MediaSink(rendition, resolver, rendition, skip, out, _UrlBudget(rendition, 2**62))
    keys = playlist.keys
    next_key = 0
    for index, segment in enumerate(playlist.segments):
        while next_key < len(keys) and keys[next_key][0] <= index:
            sink.key(keys[next_key][1])
            next_key += 1
        sink.segment(segment, index)
    for _, uri in keys[next_key:]:
        sink.key(uri)
    return out


def _describe(resolver: Resolver, ref: str) -> str:
    """The URL to report for ``ref``: mapped when possible, else as written."""
    try:
        return resolver.output(ref)
    except UnusableUrl as exc:
        return exc.url


@dataclass
class _Node:
    """One fetched playlist and what hangs below it."""

    playlists: UrlList
    media: UrlList = field(default_factory=UrlList)
    children: list[_Node] = field(default_factory=list)


class _Fetcher:
    """A client plus the bound on requests in flight, shared across videos."""

    def __init__(self, client: httpx.AsyncClient, options: ExpandOptions) -> None:
        self.client = client
        self.options = options
        self._slots = asyncio.Semaphore(options.concurrency)

    async def fetch(self, url: str) -> FetchedPlaylist:
        async with self._slots:
            return await fetch_playlist(self.client, url, self.options)


class _Expander:
    """Expands one source playlist; holds the per-video bookkeeping."""

    def __init__(self, source: str, fetcher: _Fetcher) -> None:
        self.source = source
        self.fetcher = fetcher
        self.options = fetcher.options
        try:
            root = parse_url(source)
        except UnusableUrl as exc:
            raise PlaylistError(source, exc.reason) from None
        self.root = root
        self.hosts = HostMap(root.hostport, self.options.cdn_host, self.options.allow_foreign_hosts)
        self.claimed: set[str] = set()
        self.skipped: dict[str, str] = {}
        self.live: list[str] = []
        self.warnings: list[str] = []
        self.failed: list[PlaylistError] = []
        self.budget = _UrlBudget(source, self.options.max_urls_per_video)

    def skip(self, url: str, reason: str) -> None:
        self.skipped.setdefault(url, reason)

    async def run(self) -> Expansion:
        mapped = self.hosts.apply(self.root)
        self.claimed.add(mapped)
        tree = await self._visit(str(self.root), mapped, 0, {})
        return self._flatten(tree)

    async def _visit(self, url: str, mapped: str, depth: int, imported: Mapping[str, str]) -> _Node:
        fetched = await self.fetcher.fetch(url)
        base_url, redirected = fetched.base_url, fetched.redirected
        resolver = Resolver(base_url, self.hosts)
        node = _Node(UrlList())
        self.budget.take(url)
        node.playlists.append(mapped, UrlKind.PLAYLIST, mapped, -1, None)
        if redirected and self.options.sign_url is None:
            # Players request the redirect target through the CDN as well.
            try:
                final = self.hosts.apply(resolver.base)
                self.budget.take(url)
                node.playlists.append(final, UrlKind.PLAYLIST, mapped, -1, None)
            except UnusableUrl as exc:
                self.skip(exc.url, exc.reason)
        if not _HLS_START.match(fetched.text):  # decode_playlist let a DASH MPD through
            return self._mpd(fetched, mapped, depth, node)
        text, variables = substitute_variables(fetched.text, url, imported)
        del fetched  # the text is needed only until it is parsed
        media = UrlList()
        sink = _MediaSink(url, resolver, mapped, self.skip, media, self.budget)
        playlist = parse_playlist(text, url, base_url, sink=sink, strict=self.options.strict)
        del text
        self.warnings.extend(f"{url}: {warning}" for warning in playlist.warnings)
        for ref, reason in playlist.ignored:
            self.skip(_describe(resolver, ref), reason)
        if playlist.is_master:
            for key_url in self._resolve_all(resolver, [ref for _, ref in playlist.keys]):
                self.budget.take(url)
                node.media.append(key_url, UrlKind.KEY, mapped, -1, None)
            children = self._claim_children(resolver, playlist.renditions, depth + 1)
            node.children = await self._visit_children(children, depth + 1, variables)
        else:
            node.media = media
            if playlist.is_live:
                self.live.append(mapped)
        return node

    def _mpd(self, fetched: FetchedPlaylist, mapped: str, depth: int, node: _Node) -> _Node:
        from cdn_preheat.dash import expand_mpd

        if depth:
            raise PlaylistError(fetched.url, "an MPD listed in an HLS playlist; give it on its own")
        mpd = expand_mpd(
            fetched.text, fetched.url, fetched.base_url, mapped, self.hosts, self.skip,
            self.options.max_urls_per_video, all_base_urls=self.options.dash_all_base_urls,
        )  # fmt: skip
        node.media = mpd.urls
        if mpd.is_live:
            self.live.append(mapped)
        return node

    async def _visit_children(
        self, children: list[tuple[str, str]], depth: int, variables: Mapping[str, str]
    ) -> list[_Node]:
        """Every rendition; one that fails is reported and skipped unless ``strict``."""
        visits = (self._visit(child, mapped, depth, variables) for child, mapped in children)
        if self.options.strict:
            return await _all_or_first_error(visits)
        outcomes = await asyncio.gather(*visits, return_exceptions=True)
        nodes = []
        for (_, mapped), outcome in zip(children, outcomes, strict=True):
            if isinstance(outcome, UrlLimitExceeded):
                raise outcome
            if isinstance(outcome, PlaylistError):
                self.failed.append(outcome)
                self.skip(mapped, outcome.reason)
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                nodes.append(outcome)
        if children and not nodes:
            raise self.failed[0]  # nothing of the video could be read below its master
        return nodes

    def _resolve_all(self, resolver: Resolver, refs: list[str]) -> list[str]:
        urls = []
        for ref in refs:
            try:
                urls.append(resolver.output(ref))
            except UnusableUrl as exc:
                self.skip(exc.url, exc.reason)
        return urls

    def _claim_children(
        self, resolver: Resolver, refs: list[str], depth: int
    ) -> list[tuple[str, str]]:
        """(fetch URL, output URL) of each playlist not yet claimed, in order."""
        children = []
        for ref in refs:
            try:
                located = resolver.locate(ref)
                mapped = self.hosts.apply(located)
            except UnusableUrl as exc:
                self.skip(exc.url, exc.reason)
                continue
            if mapped in self.claimed:
                continue  # listed twice, or a cycle back to an ancestor
            if depth > self.options.max_depth:
                self.skip(mapped, f"nested deeper than max_depth {self.options.max_depth}")
                continue
            self.claimed.add(mapped)
            children.append((str(located), mapped))
        return children

    def _flatten(self, tree: _Node) -> Expansion:
        nodes: list[_Node] = []
        pending = [tree]
        while pending:  # pre-order: a master before its renditions, in listed order
            node = pending.pop()
            nodes.append(node)
            pending.extend(reversed(node.children))
        seen: set[str] = set()
        urls = UrlList()
        for node in nodes:
            urls.take_unique(node.playlists, seen)
        for node in nodes:
            urls.take_unique(node.media, seen)  # each node's list is freed as it is copied
        skipped = [
            SkippedUrl(strip_userinfo(url), reason)
            for url, reason in self.skipped.items()
            if url not in seen
        ]
        # Credentials in the playlist URL open the origin; they are never pushed,
        # stored or printed (RFC 3986 section 3.2.1 deprecates them in URLs).
        urls.strip_userinfo()
        live = [strip_userinfo(url) for url in self.live]
        return Expansion(
            strip_userinfo(self.source), urls, skipped, live, self.warnings, self.failed
        )


async def _all_or_first_error(coroutines: Iterable[Coroutine[Any, Any, _Node]]) -> list[_Node]:
    """Run concurrently; on the first PlaylistError cancel the rest and raise it."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(coroutine) for coroutine in coroutines]
    except BaseExceptionGroup as errors:
        first = errors.exceptions[0]
        if isinstance(first, PlaylistError):
            raise first from None
        raise
    return [task.result() for task in tasks]


async def expand_playlist(
    url: str, options: ExpandOptions, client: httpx.AsyncClient | None = None
) -> Expansion:
    """Fetch ``url`` and every playlist below it; return the URLs to preheat."""
    if client is None:
        async with make_client(options) as own_client:
            return await _Expander(url, _Fetcher(own_client, options)).run()
    return await _Expander(url, _Fetcher(client, options)).run()


def expand(url: str, options: ExpandOptions) -> Expansion:
    """Synchronous :func:`expand_playlist` (works inside a running loop too: see ``_sync``)."""
    from cdn_preheat._sync import run_coroutine

    return run_coroutine(expand_playlist(url, options))


@dataclass(frozen=True)
class _WorkerFailed:
    error: BaseException


async def expand_many(
    items: Iterable[tuple[K, str]], options: ExpandOptions
) -> AsyncIterator[tuple[K, Expansion | PlaylistError]]:
    """Expand many videos over one client, yielding each result as it completes.

    At most ``options.concurrency`` videos are in progress; a video that fails
    yields its PlaylistError and the others go on.
    """
    pending = iter(items)
    results: asyncio.Queue[tuple[K, Expansion | PlaylistError] | _WorkerFailed | None]
    results = asyncio.Queue(maxsize=options.concurrency)
    async with make_client(options) as client:
        fetcher = _Fetcher(client, options)

        async def work() -> None:
            try:
                for key, url in pending:  # one shared iterator: each item taken once
                    result: Expansion | PlaylistError
                    try:
                        result = await _Expander(url, fetcher).run()
                    except PlaylistError as exc:
                        result = exc
                    await results.put((key, result))
            except Exception as exc:  # a bug or bad input: surface it to the caller
                await results.put(_WorkerFailed(exc))
            await results.put(None)

        workers = [asyncio.create_task(work()) for _ in range(options.concurrency)]
        try:
            running = len(workers)
            while running:
                item = await results.get()
                if item is None:
                    running -= 1
                elif isinstance(item, _WorkerFailed):
                    raise item.error
                else:
                    yield item
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
