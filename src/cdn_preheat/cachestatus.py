"""Read a CDN edge's cache verdict from its response headers.

Each vendor says "served from my cache" in its own header and words; one
parser per vendor turns that into HIT, MISS or UNKNOWN and names the header
that decided. ``Age > 0`` is used only when no vendor header is present: an
origin can send ``Age`` itself, so it is the weakest evidence.

HIT means the edge answered from its cache (fresh, revalidated or stale).
UPPER means the edge missed but an upper layer of the same CDN (Tencent's
middle layer, Alibaba's L2) answered from its cache: the file is warm in the
CDN, which is where Tencent mainland and Alibaba prefetches put it, and the
edge keeps it from the first viewer on. MISS means nothing in the CDN had it
(or it was not cacheable: bypass, dynamic). Anything a parser does not
recognise is UNKNOWN, never a guess.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

import httpx


class CacheStatus(StrEnum):
    HIT = "hit"  # the edge's own copy
    UPPER = "upper"  # warm in an upper layer of the CDN, not (yet) at this edge
    MISS = "miss"
    UNKNOWN = "unknown"

    @property
    def cached(self) -> bool:
        """Held by the CDN, at the edge or in an upper layer."""
        return self in (CacheStatus.HIT, CacheStatus.UPPER)


@dataclass(frozen=True)
class CacheVerdict:
    """The verdict, the header that decided it and the value it held."""

    status: CacheStatus
    header: str | None = None
    value: str | None = None

    @property
    def hit(self) -> bool:
        """The edge itself answered from cache."""
        return self.status is CacheStatus.HIT

    @property
    def cached(self) -> bool:
        """The CDN held the file: an edge hit or an upper-layer hit."""
        return self.status.cached


UNKNOWN = CacheVerdict(CacheStatus.UNKNOWN)
Headers = Mapping[str, str] | httpx.Headers
# A parser reads its header's values (one per layer, the edge's first); it may
# look at other headers of the answer (Alibaba's Via) to tell an upper-layer hit.
_Parser = Callable[[list[str], Headers], CacheStatus]


def _tencent(values: list[str], headers: Headers) -> CacheStatus:
    # Tencent sends one X-Cache-Lookup line per cache layer, the edge's first:
    # "Cache Hit" then "Hit From Inner Cluster" on a hit. "Cache Miss" then
    # "Hit From Inner Cluster" is the edge missing and the inner (middle-layer)
    # cluster answering, what the first request after a middle-layer prefetch
    # shows (kanchuan.com/blog/186-cdn-x-cache-lookup). "Hit From Upstream"
    # first is not a hit (Tencent developer notes) and proves no layer held it.
    first = values[0].strip().lower()
    if first in ("hit from memcache", "hit from disktank", "cache hit"):
        return CacheStatus.HIT
    if first == "cache miss" and any(v.strip().lower() == _INNER for v in values[1:2]):
        return CacheStatus.UPPER
    if first in ("cache miss", "hit from upstream"):
        return CacheStatus.MISS
    return CacheStatus.UNKNOWN


_INNER = "hit from inner cluster"


def _qiniu(values: list[str], headers: Headers) -> CacheStatus:
    # "Hit", "Miss", and layered forms, one word per layer with the edge's
    # first, such as "Validate,MissValidate"; "RawProxy" is a pass-through
    # that was never cached. An edge miss whose next layer says "Hit" is an
    # upper-layer hit (read from the layered form; Qiniu prefetches fill the
    # edge, developer.qiniu.com/fusion/4155, so it is rare after a prefetch).
    first = values[0].strip().lower()
    if first.startswith("hit"):
        return CacheStatus.HIT
    if first.startswith("miss") and len(values) > 1 and values[1].strip().lower() == "hit":
        return CacheStatus.UPPER
    if first.startswith("miss") or first == "rawproxy":
        return CacheStatus.MISS
    return CacheStatus.UNKNOWN


# One Via entry of Alibaba's, e.g. "cache45.l2cm9[0,200-0,H]": the node, then
# times, the status and H (hit) or M (miss) for a cache node; "[9,0]" entries
# are the node's load balancer and carry no verdict.
_VIA_ENTRY = re.compile(r"([\w.-]+)\[([^\]]*)\]")
_L2_NODE = re.compile(r"\.l2", re.IGNORECASE)


def _aliyun(values: list[str], headers: Headers) -> CacheStatus:
    # X-Cache is the L1 (edge) node's verdict. On an edge miss, an L2 node
    # whose Via entry ends in H held the file: warm in the upper layer
    # (Via formats: cnblogs.com/panxiaoming/p/9851701, tnie.github.io/2019/11/04/debugCDN,
    # m.haomeiwen.com/subject/wstkvrtx).
    status = _x_cache(values, headers)
    if status is not CacheStatus.MISS:
        return status
    for via in _values(headers, "Via", split_commas=False):
        for node, fields in _VIA_ENTRY.findall(via):
            flags = fields.split(",")
            if _L2_NODE.search(node) and flags[-1].strip().upper() == "H":
                return CacheStatus.UPPER
    return status


def _x_cache(values: list[str], headers: Headers) -> CacheStatus:
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


_EDGEONE = {
    # edgeone.ai/document/54212 ("Default HTTP Response Headers", EO-Cache-Status): HIT, the
    # node's cache answered; RefreshHit, its stale copy was confirmed by a 304 and served;
    # MISS, not in the cache, or stale and replaced by the origin's new copy.
    "hit": CacheStatus.HIT,
    "refreshhit": CacheStatus.HIT,
    "miss": CacheStatus.MISS,
}


def _edgeone(values: list[str], headers: Headers) -> CacheStatus:
    return _EDGEONE.get(values[0].strip().lower(), CacheStatus.UNKNOWN)


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


def _cloudflare(values: list[str], headers: Headers) -> CacheStatus:
    return _CLOUDFLARE.get(values[0].strip().lower(), CacheStatus.UNKNOWN)


# Alibaba's X-Swift-CacheTime is the cached copy's TTL; it is sent on misses
# that got stored as well as on hits, so it is not evidence of a hit.
# Keyed by CDN, not by provider: verify reads CDNs cdn-preheat does not push to
# (Cloudflare, CloudFront, whatever fronts the http provider); a registration names
# its parser with ProviderSpec.cache_vendor.
VENDOR_HEADERS: dict[str, tuple[str, _Parser]] = {
    "tencent": ("X-Cache-Lookup", _tencent),
    "edgeone": ("EO-Cache-Status", _edgeone),
    "qiniu": ("X-Qnm-Cache", _qiniu),
    "aliyun": ("X-Cache", _aliyun),
    "cloudflare": ("CF-Cache-Status", _cloudflare),
    "cloudfront": ("X-Cache", _x_cache),
}
# Without a vendor: the vendor-specific names first, the shared X-Cache last
# (Qiniu and other CDNs in front of one another may each add an X-Cache).
_AUTO_ORDER = ("cloudflare", "edgeone", "tencent", "qiniu", "aliyun")
_SPLIT = re.compile(r"[\r\n,]+")


def parse_cache_status(headers: Headers, vendor: str | None = None) -> CacheVerdict:
    """The edge's verdict from response ``headers``; ``vendor`` picks one parser.

    Without a vendor, the first known header that gives a verdict decides.
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
        verdict = CacheVerdict(parser(values, headers), header, ", ".join(values))
        if verdict.status is not CacheStatus.UNKNOWN:
            return verdict
        undecided = undecided or verdict
    # A vendor header we cannot read still beats Age, which the origin may have set.
    return undecided or _from_age(headers)


def _values(headers: Headers, name: str, *, split_commas: bool = True) -> list[str]:
    if isinstance(headers, httpx.Headers):
        raw = headers.get_list(name)
    else:
        wanted = name.lower()
        raw = [value for key, value in headers.items() if key.lower() == wanted]
    if not split_commas:
        return raw
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
