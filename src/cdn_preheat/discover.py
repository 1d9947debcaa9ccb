"""Find the videos stored in a Qiniu bucket: its top-level playlists under a prefix.

``batch --qiniu-bucket`` lists the bucket (``BucketManager.list``, following
markers), keeps the ``.m3u8`` and ``.mpd`` keys and decides which are videos:
a DASH MPD always is (it describes a whole presentation), and an HLS playlist
is decided by reading it: a playlist is top-level when it is a master, or a media playlist that
no master in the listing references. Naming conventions (``master.m3u8``,
``index.m3u8``) differ between packagers and often name both a master and its
variants alike, so they would guess wrong; fetching costs one small GET per
playlist, concurrent and pooled, and the expander fetches the same files
right after, so a bucket's playlists are read rather than guessed. A playlist
that cannot be fetched is kept, so that the batch reports its error.

A video's id is its playlist key without ``.m3u8`` (or ``.mpd``), ``/`` kept
(``vod/film-1/master.m3u8`` -> ``vod/film-1/master``): unique because keys
are, and stable across runs, so the ledger recognises videos already pushed.
A title packaged as both HLS and DASH is two videos; the segments they share
are pushed once, as the ledger dedupes URLs across videos.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

from cdn_preheat.errors import InputError, PlaylistError
from cdn_preheat.hls import ExpandOptions, fetch_playlist, make_client, parse_playlist
from cdn_preheat.source import VideoSource
from cdn_preheat.urlresolve import UnusableUrl, resolve_url

if TYPE_CHECKING:
    from cdn_preheat.providers.qiniu import QiniuProvider

PLAYLIST_SUFFIX = ".m3u8"
MPD_SUFFIX = ".mpd"


def playlist_url(domain: str, key: str) -> str:
    """The URL of a bucket key on ``domain`` (a host, https assumed, or a scheme://host URL)."""
    base = domain.strip().rstrip("/")
    if "://" not in base:
        base = f"https://{base}"
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
        raise InputError(f"--domain takes a host such as cdn.example.com, not {domain!r}.")
    return f"{base}/{quote(key, safe='/')}"


def video_id_for(key: str) -> str:
    return key.removesuffix(PLAYLIST_SUFFIX).removesuffix(MPD_SUFFIX)


async def discover_qiniu_videos(
    lister: QiniuProvider, bucket: str, prefix: str, domain: str, options: ExpandOptions
) -> list[VideoSource]:
    """One source per top-level playlist or MPD under ``prefix``, in key order.

    The listing (the Qiniu SDK, blocking) runs in a worker thread; the
    playlists are fetched on the calling loop.
    """
    suffixes = (PLAYLIST_SUFFIX, MPD_SUFFIX)
    listed = await asyncio.to_thread(lambda: list(lister.iter_keys(bucket, prefix)))
    keys = [key for key in listed if key.endswith(suffixes)]
    urls = {key: playlist_url(domain, key) for key in keys}
    hls = [url for key, url in urls.items() if key.endswith(PLAYLIST_SUFFIX)]
    top = set(await top_level_playlists_async(hls, options))
    return [
        VideoSource(video_id_for(key), url, number)
        for number, (key, url) in enumerate(urls.items(), start=1)
        if url in top or key.endswith(MPD_SUFFIX)
    ]


async def top_level_playlists_async(urls: Sequence[str], options: ExpandOptions) -> list[str]:
    """The URLs no master among ``urls`` references, in the given order."""
    referenced = await _referenced_playlists(urls, options)
    return [url for url in urls if _location(url) not in referenced]


def top_level_playlists(urls: Sequence[str], options: ExpandOptions) -> list[str]:
    """Synchronous :func:`top_level_playlists_async`, for sync callers."""
    from cdn_preheat._sync import run_coroutine

    return run_coroutine(top_level_playlists_async(urls, options))


async def _referenced_playlists(
    urls: Iterable[str], options: ExpandOptions
) -> set[tuple[str, str]]:
    slots = asyncio.Semaphore(options.concurrency)
    async with make_client(options) as client:

        async def children(url: str) -> list[tuple[str, str]]:
            async with slots:
                try:
                    fetched = await fetch_playlist(client, url, options)
                    playlist = parse_playlist(fetched.text, url, fetched.base_url)
                except PlaylistError:
                    return []  # kept as top-level; the batch reports the error
            found = []
            for ref in playlist.renditions:
                try:
                    found.append(_location(resolve_url(fetched.base_url, ref)))
                except UnusableUrl:
                    continue
            return found

        nested = await asyncio.gather(*(children(url) for url in urls))
    return {location for found in nested for location in found}


def _location(url: str) -> tuple[str, str]:
    """Host and decoded path: how a reference and a listed key are matched."""
    parts = urlsplit(url)
    return parts.netloc.lower(), unquote(parts.path)
