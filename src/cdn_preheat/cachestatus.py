"""Read a CDN edge's cache verdict from its response headers.

Each vendor says "served from my cache" in its own header and words; one
parser per vendor turns that into HIT, MISS or UNKNOWN and names the header
that decided. ``Age > 0`` is used only when no vendor header is present: an
origin can send ``Age`` itself, so it is the weakest evidence.

HIT means the edge answered from its cache (fresh, revalidated or stale);
MISS means it went upstream or did not cache (bypass, dynamic). Anything a
parser does not recognise is UNKNOWN, never a guess.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

import httpx


class CacheStatus(StrEnum):
    HIT = "hit"
    MISS = "miss"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class CacheVerdict:
    """The verdict, the header that decided it and the value it held."""

    status: CacheStatus
    header: str | None = None
    value: str | None = None

    @property
    def hit(self) -> bool:
        return self.status is CacheStatus.HIT


UNKNOWN = CacheVerdict(CacheStatus.UNKNOWN)
Headers = Mapping[str, str] | httpx.Headers
_Parser = Callable[[list[str]], CacheStatus]


def _tencent(values: list[str]) -> CacheStatus:
    # Tencent sends one X-Cache-Lookup line per cache layer, the edge's first:
    # "Cache Hit" then "Hit From Inner Cluster" on a hit, "Hit From Upstream"
    # (fetched from the parent layer) or "Cache Miss" first on a miss.
    first = values[0].strip().lower()
    if first in ("hit from memcache", "hit from disktank", "cache hit"):
        return CacheStatus.HIT
    if first in ("cache miss", "hit from upstream"):
        return CacheStatus.MISS
    return CacheStatus.UNKNOWN


def _qiniu(values: list[str]) -> CacheStatus:
    # "Hit", "Miss", and layered forms such as "Validate,MissValidate";
    # "RawProxy" is a pass-through that was never cached.
    first = values[0].strip().lower()
    if first.startswith("hit"):
        return CacheStatus.HIT
    if first.startswith("miss") or first == "rawproxy":
        return CacheStatus.MISS
    return CacheStatus.UNKNOWN


def _x_cache(values: list[str]) -> CacheStatus:
    # Alibaba "HIT TCP_MEM_HIT dirn:-2:-2" / "MISS TCP_REFRESH_MISS ...",
    # CloudFront "Hit from cloudfront" / "RefreshHit from cloudfront" /
    # "Miss from cloudfront"; "Error", "Redirect", "LimitExceeded" and
    # "FunctionGeneratedResponse from cloudfront" say nothing about the cache.
    first = values[0].strip()
    word = first.split(maxsplit=1)[0].lower() if first else ""
    if word in ("hit", "refreshhit"):
        return CacheStatus.HIT
    if word == "miss":
        return CacheStatus.MISS
    return CacheStatus.UNKNOWN


_CLOUDFLARE = {
    "hit": CacheStatus.HIT,
    "stale": CacheStatus.HIT,  # served from cache while the origin was unreachable
    "updating": CacheStatus.HIT,  # served from cache while it refreshes
    "revalidated": CacheStatus.HIT,  # cached copy confirmed by a 304
    "miss": CacheStatus.MISS,
    "expired": CacheStatus.MISS,  # cached copy too old: fetched again
    "bypass": CacheStatus.MISS,
    "dynamic": CacheStatus.MISS,  # not eligible for caching
}


def _cloudflare(values: list[str]) -> CacheStatus:
    return _CLOUDFLARE.get(values[0].strip().lower(), CacheStatus.UNKNOWN)


# Alibaba's X-Swift-CacheTime is the cached copy's TTL; it is sent on misses
# that got stored as well as on hits, so it is not evidence of a hit.
VENDOR_HEADERS: dict[str, tuple[str, _Parser]] = {
    "tencent": ("X-Cache-Lookup", _tencent),
    "qiniu": ("X-Qnm-Cache", _qiniu),
    "aliyun": ("X-Cache", _x_cache),
    "cloudflare": ("CF-Cache-Status", _cloudflare),
    "cloudfront": ("X-Cache", _x_cache),
}
# Without a vendor: the vendor-specific names first, the shared X-Cache last
# (Qiniu and other CDNs in front of one another may each add an X-Cache).
_AUTO_ORDER = ("cloudflare", "tencent", "qiniu", "aliyun")
_SPLIT = re.compile(r"[\r\n,]+")


def parse_cache_status(headers: Headers, vendor: str | None = None) -> CacheVerdict:
    """The edge's verdict from response ``headers``; ``vendor`` picks one parser.

    Without a vendor, the first known header that says HIT or MISS decides.
    Repeated headers and comma- or newline-joined values are split into one
    value per cache layer; the first (the edge nearest the client) decides.
    """
    if vendor is not None and vendor not in VENDOR_HEADERS:
        raise ValueError(f"unknown CDN vendor {vendor!r}; one of {', '.join(VENDOR_HEADERS)}")
    names = (vendor,) if vendor is not None else _AUTO_ORDER
    undecided: CacheVerdict | None = None
    for name in names:
        header, parser = VENDOR_HEADERS[name]
        values = _values(headers, header)
        if not values:
            continue
        verdict = CacheVerdict(parser(values), header, ", ".join(values))
        if verdict.status is not CacheStatus.UNKNOWN:
            return verdict
        undecided = undecided or verdict
    # A vendor header we cannot read still beats Age, which the origin may have set.
    return undecided or _from_age(headers)


def _values(headers: Headers, name: str) -> list[str]:
    if isinstance(headers, httpx.Headers):
        raw = headers.get_list(name)
    else:
        wanted = name.lower()
        raw = [value for key, value in headers.items() if key.lower() == wanted]
    return [part.strip() for value in raw for part in _SPLIT.split(value) if part.strip()]


def _from_age(headers: Headers) -> CacheVerdict:
    values = _values(headers, "Age")
    if not values:
        return UNKNOWN
    try:
        age = int(values[0])
    except ValueError:
        return CacheVerdict(CacheStatus.UNKNOWN, "Age", values[0])
    # Age 0 is what a fresh fetch looks like, but also a hit stored this second.
    status = CacheStatus.HIT if age > 0 else CacheStatus.UNKNOWN
    return CacheVerdict(status, "Age", values[0])
