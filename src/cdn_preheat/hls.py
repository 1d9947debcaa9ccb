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
import re
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import httpx
import m3u8
import m3u8.parser
from m3u8.parser import ATTRIBUTELISTPATTERN, remove_quotes

from cdn_preheat import __version__
from cdn_preheat.errors import PlaylistError
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
    """Everything one source playlist expands to."""

    source: str
    urls: list[ExpandedUrl]
    skipped: list[SkippedUrl]
    live_playlists: list[str]

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


def make_client(options: ExpandOptions) -> httpx.AsyncClient:
    """A pooled client that follows redirects and accepts gzip."""
    return httpx.AsyncClient(
        follow_redirects=True,
        timeout=httpx.Timeout(options.timeout),
        limits=httpx.Limits(
            max_connections=options.concurrency, max_keepalive_connections=options.concurrency
        ),
        headers={"User-Agent": f"cdn-preheat/{__version__}"},
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


async def _fetch_with_retries(
    client: httpx.AsyncClient, url: str, options: ExpandOptions
) -> FetchedPlaylist:
    target = options.sign_url(url) if options.sign_url is not None else url
    failure = ""
    for attempt in range(options.retries + 1):
        if attempt:
            await asyncio.sleep(options.retry_backoff * 2 ** (attempt - 1))
        try:
            async with client.stream("GET", target) as response:
                status = response.status_code
                if status >= 500:
                    failure = f"HTTP {status}"
                    continue
                if not 200 <= status < 300:
                    raise PlaylistError(url, f"HTTP {status} {response.reason_phrase}".rstrip())
                body = await _read_capped(response, url, options.max_bytes)
                redirected = bool(response.history)
                # Without a redirect the unsigned URL is the base, so a
                # signature never leaks into resolved URLs.
                base_url = str(response.url) if redirected else url
                content_type = response.headers.get("content-type", "")
        except _RETRYABLE as exc:
            failure = _describe_transport_error(exc)
            continue
        except httpx.HTTPError as exc:
            raise PlaylistError(url, f"fetch failed ({type(exc).__name__}: {exc})") from None
        return FetchedPlaylist(url, base_url, redirected, decode_playlist(url, body, content_type))
    attempts = options.retries + 1
    raise PlaylistError(url, f"{failure} after {attempts} attempt{'s' * (attempts > 1)}")


async def _read_capped(response: httpx.Response, url: str, max_bytes: int) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise PlaylistError(url, f"response is {declared} bytes, over the {max_bytes}-byte cap")
    chunks: list[bytes] = []
    total = 0
    # Counted after decompression, so a gzip bomb stops at the cap too.
    async for chunk in response.aiter_bytes():
        total += len(chunk)
        if total > max_bytes:
            raise PlaylistError(url, f"response is over the {max_bytes}-byte cap")
        chunks.append(chunk)
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
    """Notes, in file order, what the ``m3u8`` model loses.

    ``segment.key`` holds only the last of several ``EXT-X-KEY`` tags, the
    master's lists are split by tag type, ``preload_hint`` keeps only the last
    hint, and interstitial assets are not modelled at all.
    """

    __slots__ = ("ignored", "keys", "renditions")

    def __init__(self) -> None:
        self.keys: list[tuple[int, str]] = []  # (index of the next segment, URI)
        self.renditions: list[tuple[str, int]] = []  # (model list, position in it)
        self.ignored: list[tuple[str, str]] = []  # (URI, why it is not preheated)

    def __call__(self, line: str, lineno: int, data: dict[str, Any], state: object) -> bool:
        # Returning False lets m3u8 parse the line as usual.
        if not line.startswith("#EXT-X-"):
            return False
        tag = line[7 : line.find(":")] if ":" in line else ""
        if tag == "KEY":
            uri = attributes(line).get("URI")
            if uri:
                self.keys.append((len(data["segments"]), uri))
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


@dataclass(frozen=True)
class ParsedPlaylist:
    """The references in one playlist, in file order."""

    is_master: bool
    is_live: bool
    renditions: list[str]  # master: every playlist URI, as listed
    keys: list[tuple[int, str]]  # (index of the first segment it applies to, URI)
    segments: Sequence[Mapping[str, Any]]  # m3u8's parsed segment dicts (uri, duration, ...)
    ignored: list[tuple[str, str]]


def parse_playlist(text: str, url: str, base_url: str) -> ParsedPlaylist:
    """Parse with ``m3u8``; PlaylistError names ``url`` when it fails or yields nothing.

    Media playlists are read from ``m3u8.parser.parse``'s data: building the
    ``M3U8`` model on top (an object per segment, key and init section) cost
    a third of the parse time and nothing here needs it. Masters, a few lines
    long, get the model too, which validates their tags (``BANDWIDTH``).
    """
    recorder = _TagRecorder()
    try:
        data = m3u8.parser.parse(text, custom_tags_parser=recorder)
        session_keys: list[str] = []
        if recorder.renditions:
            recorder = _TagRecorder()
            model = m3u8.loads(text, uri=base_url, custom_tags_parser=recorder)
            data = model.data
            session_keys = [key.uri for key in model.session_keys if key is not None and key.uri]
    except KeyError as exc:
        # m3u8 indexes required attributes directly, e.g. a STREAM-INF without BANDWIDTH.
        name = str(exc.args[0]) if exc.args else ""
        if not re.fullmatch(r"[a-z_]+", name):
            raise PlaylistError(url, f"malformed playlist (KeyError: {name})") from None
        missing = name.upper().replace("_", "-")
        raise PlaylistError(url, f"malformed playlist: a tag lacks {missing}") from None
    except Exception as exc:  # m3u8 raises bare ValueError/TypeError/IndexError on bad input
        raise PlaylistError(url, f"malformed playlist ({type(exc).__name__}: {exc})") from None

    renditions = []
    for list_name, position in recorder.renditions:
        entries = data[list_name]
        if position < len(entries) and entries[position].get("uri"):
            renditions.append(entries[position]["uri"])
    keys = recorder.keys
    segments = data["segments"]
    if renditions:
        keys = [(0, uri) for uri in session_keys]
    elif not segments:
        # Lowercase or unknown tags parse to nothing; that is not an empty video.
        raise PlaylistError(url, "no segments or variant streams found, not an HLS playlist")
    else:
        _check_media(data, url)
    return ParsedPlaylist(
        is_master=bool(renditions),
        is_live=not renditions and not data["is_endlist"],
        renditions=renditions,
        keys=keys,
        segments=segments,
        ignored=recorder.ignored,
    )


def _check_media(data: Mapping[str, Any], url: str) -> None:
    """Refuse what the ``M3U8`` model would: a key without METHOD, a map or part without URI."""
    for key in data["keys"]:
        if key is not None and "method" not in key:
            raise PlaylistError(url, "malformed playlist: EXT-X-KEY lacks METHOD")
    for segment in data["segments"]:
        init = segment.get("init_section")
        if init is not None and not init.get("uri"):
            raise PlaylistError(url, "malformed playlist: EXT-X-MAP lacks URI")
        for part in segment.get("parts", ()):
            if not part.get("uri") or "duration" not in part:
                raise PlaylistError(url, "malformed playlist: EXT-X-PART lacks URI or DURATION")


# --------------------------------------------------------------------------- expand


def media_urls(
    playlist: ParsedPlaylist,
    resolver: Resolver,
    rendition: str,
    skip: Callable[[str, str], None],
) -> list[ExpandedUrl]:
    """Keys, init sections, parts and segments of a media playlist in playback order.

    Consecutive repeats of one URL (byte ranges of one file) give one entry.
    """
    output = resolver.output
    urls: list[ExpandedUrl] = []
    append = urls.append
    keys = playlist.keys
    next_key = 0
    last_init: str | None = None
    last_url = ""

    def add(ref: str, kind: UrlKind) -> None:
        nonlocal last_url
        try:
            url = output(ref)
        except UnusableUrl as exc:
            skip(exc.url, exc.reason)
            return
        if url != last_url:
            append(ExpandedUrl(url, kind, rendition, -1, None))
            last_url = url

    segment_kind = UrlKind.SEGMENT
    next_key_at = keys[0][0] if keys else -1
    for index, segment in enumerate(playlist.segments):
        if next_key_at != -1 and next_key_at <= index:
            while next_key < len(keys) and keys[next_key][0] <= index:
                add(keys[next_key][1], UrlKind.KEY)
                next_key += 1
            next_key_at = keys[next_key][0] if next_key < len(keys) else -1
        init = segment.get("init_section")
        if init is not None and init["uri"] != last_init:
            last_init = init["uri"]
            add(init["uri"], UrlKind.INIT)
        for part in segment.get("parts", ()):
            if part.get("gap") == "YES":
                skip(_describe(resolver, part["uri"]), "gap part")
            else:
                add(part["uri"], UrlKind.PART)
        uri = segment.get("uri")
        if uri is None:  # parts of a segment still being written
            continue
        if segment.get("gap_tag"):
            skip(_describe(resolver, uri), "gap segment")
            continue
        # add() inlined: this runs once per segment.
        try:
            url = output(uri)
        except UnusableUrl as exc:
            skip(exc.url, exc.reason)
            continue
        if url != last_url:
            append(ExpandedUrl(url, segment_kind, rendition, index, segment.get("duration")))
            last_url = url
    for _, uri in keys[next_key:]:
        add(uri, UrlKind.KEY)
    return urls


def _describe(resolver: Resolver, ref: str) -> str:
    """The URL to report for ``ref``: mapped when possible, else as written."""
    try:
        return resolver.output(ref)
    except UnusableUrl as exc:
        return exc.url


@dataclass
class _Node:
    """One fetched playlist and what hangs below it."""

    playlists: list[ExpandedUrl]
    media: list[ExpandedUrl] = field(default_factory=list)
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

    def skip(self, url: str, reason: str) -> None:
        self.skipped.setdefault(url, reason)

    async def run(self) -> Expansion:
        mapped = self.hosts.apply(self.root)
        self.claimed.add(mapped)
        tree = await self._visit(str(self.root), mapped, 0, {})
        return self._flatten(tree)

    async def _visit(self, url: str, mapped: str, depth: int, imported: Mapping[str, str]) -> _Node:
        fetched = await self.fetcher.fetch(url)
        resolver = Resolver(fetched.base_url, self.hosts)
        node = _Node([ExpandedUrl(mapped, UrlKind.PLAYLIST, mapped, -1, None)])
        if fetched.redirected and self.options.sign_url is None:
            # Players request the redirect target through the CDN as well.
            try:
                final = self.hosts.apply(resolver.base)
                node.playlists.append(ExpandedUrl(final, UrlKind.PLAYLIST, mapped, -1, None))
            except UnusableUrl as exc:
                self.skip(exc.url, exc.reason)
        if not _HLS_START.match(fetched.text):  # decode_playlist let a DASH MPD through
            return self._mpd(fetched, mapped, depth, node)
        text, variables = substitute_variables(fetched.text, url, imported)
        playlist = parse_playlist(text, url, fetched.base_url)
        for ref, reason in playlist.ignored:
            self.skip(_describe(resolver, ref), reason)
        if playlist.is_master:
            node.media = [
                ExpandedUrl(url, UrlKind.KEY, mapped, -1, None)
                for url in self._resolve_all(resolver, [ref for _, ref in playlist.keys])
            ]
            children = self._claim_children(resolver, playlist.renditions, depth + 1)
            node.children = await _all_or_first_error(
                self._visit(child_url, child_mapped, depth + 1, variables)
                for child_url, child_mapped in children
            )
        else:
            node.media = media_urls(playlist, resolver, mapped, self.skip)
            if playlist.is_live:
                self.live.append(mapped)
        return node

    def _mpd(self, fetched: FetchedPlaylist, mapped: str, depth: int, node: _Node) -> _Node:
        from cdn_preheat.dash import expand_mpd

        if depth:
            raise PlaylistError(fetched.url, "an MPD listed in an HLS playlist; give it on its own")
        mpd = expand_mpd(
            fetched.text, fetched.url, fetched.base_url, mapped, self.hosts, self.skip,
            self.options.max_urls_per_video,
        )  # fmt: skip
        node.media = mpd.urls
        if mpd.is_live:
            self.live.append(mapped)
        return node

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
        urls: list[ExpandedUrl] = []
        for entries in [node.playlists for node in nodes] + [node.media for node in nodes]:
            for entry in entries:
                if entry.url not in seen:
                    seen.add(entry.url)
                    urls.append(entry)
        skipped = [
            SkippedUrl(url, reason) for url, reason in self.skipped.items() if url not in seen
        ]
        return Expansion(self.source, urls, skipped, self.live)


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
    """Synchronous :func:`expand_playlist`."""
    return asyncio.run(expand_playlist(url, options))


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
