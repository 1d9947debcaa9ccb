"""Each vendor's cache-header parser against header samples seen in the wild.

Sources of the samples (header lines copied from captured responses):

[T1] kanchuan.com/blog/186-cdn-x-cache-lookup (2023, Tencent Cloud CDN, curl -I):
     hit "X-Cache-Lookup: Cache Hit"; first request of a new file
     "X-Cache-Lookup: Cache Miss" then "X-Cache-Lookup: Hit From Inner Cluster":
     the edge missed, the inner (middle-layer) cluster answered, which is what
     the first request after a mainland prefetch shows (SDK
     PushUrlsCacheRequest.Layer: mainland prefetches go to the middle layer).
[T2] an OkHttp log of a Tencent-fronted API (no-cache response):
     "Hit From Upstream", "Cache Miss", later "Hit From Inner Cluster".
[T3] Tencent's help page "how to tell whether a request hit the CDN cache", as
     quoted by [T1] and support.huaweicloud.com cdn_faq_0245: "Hit From
     MemCache", "Hit From Disktank"; developer notes mark "Hit From Upstream"
     as not hit.
[Q1] Qiniu curl captures: "X-Qnm-Cache: Hit" (X-M-Log QNM:xs450;QNM3/304),
     "X-Qnm-Cache: Miss" (sliced download), "X-Qnm-Cache: Validate,MissValidate"
     (a 301 revalidated through two layers), "X-Qnm-Cache: RawProxy" (private
     bucket, proxied uncached, alongside Alibaba "X-Cache: MISS TCP_MISS").
[A1] tnie.github.io/2019/11/04/debugCDN and cnblogs panxiaoming/p/9851701:
     "X-Cache: HIT TCP_MEM_HIT dirn:-2:-2" with "X-Swift-CacheTime: 1765";
     Via (one entry per node, L2 "…l2…" first, cache nodes end in H or M):
     tnie "Via: cache36.l2cn1818[23,200-0,M], cache14.l2cn1818[39,0],
     kunlun7.cn1481[0,200-0,H], kunlun7.cn1481[1,0]" (L2 miss, L1 hit);
     panxiaoming "Via: cache45.l2cm9[0,200-0,H], cache25.l2cm9[9,0],
     cache9.cn831[0,200-0,H], cache9.cn831[0,0]" (both hit);
     m.haomeiwen.com wstkvrtx "Via: cache55.l2cn2630[28,28,200-0,M],
     cache39.l2cn2630[30,0], vcache10.cn838[85,85,200-0,M], vcache15.cn838[86,0]"
     with "X-Cache: MISS TCP_MISS dirn:-2:-2" (both miss);
     m.haomeiwen.com wstkvrtx: "X-Cache: MISS TCP_MISS dirn:-2:-2";
     other captures: "HIT TCP_HIT dirn:0:668131903", "HIT TCP_IMS_HIT
     dirn:6:453356086 mlen:-1", "MISS TCP_REFRESH_MISS".
[C1] developers.cloudflare.com/cache/concepts/cache-responses: CF-Cache-Status
     HIT, MISS, EXPIRED, STALE, BYPASS, REVALIDATED, UPDATING, DYNAMIC, NONE.
[E1] edgeone.ai/document/54212 (EdgeOne "Default HTTP Response Headers"): EO-Cache-Status
     HIT (served from the node's cache), MISS (not cached, or stale and replaced by the
     origin's 200), RefreshHit (stale, confirmed by the origin's 304, served from cache).
[F1] gist andyparsons/563c7e4dab956b1c85af: "X-Cache: Hit from cloudfront",
     "X-Cache: Miss from cloudfront"; AWS CloudFront developer guide (standard
     log x-edge-result-type): RefreshHit, Error, Redirect, LimitExceeded.
"""

from __future__ import annotations

import httpx
import pytest

from cdn_preheat.cachestatus import CacheStatus, CacheVerdict, parse_cache_status

HIT, MISS, UNKNOWN = CacheStatus.HIT, CacheStatus.MISS, CacheStatus.UNKNOWN
UPPER = CacheStatus.UPPER


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["Hit From MemCache"], HIT),  # [T3]
        (["Hit From Disktank"], HIT),  # [T3]
        (["Cache Hit"], HIT),  # [T1]
        (["Cache Hit", "Hit From Inner Cluster"], HIT),  # [T1] cached, two layers
        (["Cache Miss", "Hit From Inner Cluster"], UPPER),  # [T1] served by the middle layer
        (["Cache Miss"], MISS),
        (["Hit From Upstream", "Cache Miss", "Hit From Inner Cluster"], MISS),  # [T2]
        (["Hit From Upstream", "Hit From Inner Cluster"], MISS),  # [T3]
        (["Hit From Inner Cluster"], UNKNOWN),  # only ever seen behind an edge line
    ],
)
def test_tencent_first_line_is_the_edge_and_decides(
    lines: list[str], expected: CacheStatus
) -> None:
    repeated = httpx.Headers([("X-Cache-Lookup", line) for line in lines])
    joined = {"x-cache-lookup": ", ".join(lines)}
    newline_joined = {"X-Cache-Lookup": "\n".join(lines)}
    for headers in (repeated, joined, newline_joined):
        verdict = parse_cache_status(headers, "tencent")
        assert verdict.status is expected, headers
        assert verdict.header == "X-Cache-Lookup"
    assert parse_cache_status(repeated).status is expected  # found without naming the vendor


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Hit", HIT),
        ("Miss", MISS),
        ("Miss,Hit", UPPER),  # the layered form [Q1]: the edge missed, the next layer hit
        ("Miss,Miss", MISS),
        ("Validate,MissValidate", UNKNOWN),  # revalidated: says nothing about the edge copy
        ("RawProxy", MISS),
        ("HIT", HIT),
    ],
)
def test_qiniu(value: str, expected: CacheStatus) -> None:  # [Q1]
    assert parse_cache_status({"X-Qnm-Cache": value}, "qiniu").status is expected


def test_qiniu_header_wins_over_the_x_cache_of_a_cdn_behind_it() -> None:  # [Q1]
    headers = httpx.Headers(
        [
            ("X-Qnm-Cache", "Hit"),
            ("X-Cache", "MISS TCP_MISS dirn:-2:-2"),
            ("X-Cache", "MISS TCP_MISS dirn:-2:-2"),
        ]
    )
    assert parse_cache_status(headers) == CacheVerdict(HIT, "X-Qnm-Cache", "Hit")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("HIT TCP_MEM_HIT dirn:-2:-2", HIT),
        ("HIT TCP_MEM_HIT dirn:11:224599460", HIT),
        ("HIT TCP_HIT dirn:0:668131903", HIT),
        ("HIT TCP_IMS_HIT dirn:6:453356086 mlen:-1", HIT),
        ("MISS TCP_MISS dirn:-2:-2", MISS),
        ("MISS TCP_REFRESH_MISS dirn:-2:-2", MISS),
    ],
)
def test_aliyun(value: str, expected: CacheStatus) -> None:  # [A1]
    headers = {"X-Cache": value, "X-Swift-CacheTime": "1765", "Age": "1080"}
    verdict = parse_cache_status(headers, "aliyun")
    assert verdict == CacheVerdict(expected, "X-Cache", value)


_L2_HIT_L1_HIT = (
    "cache45.l2cm9[0,200-0,H], cache25.l2cm9[9,0], cache9.cn831[0,200-0,H], cache9.cn831[0,0]"
)
_L2_MISS_L1_HIT = "cache36.l2cn1818[23,200-0,M], cache14.l2cn1818[39,0], kunlun7.cn1481[0,200-0,H], kunlun7.cn1481[1,0]"  # noqa: E501
_BOTH_MISS = "cache55.l2cn2630[28,28,200-0,M], cache39.l2cn2630[30,0], vcache10.cn838[85,85,200-0,M], vcache15.cn838[86,0]"  # noqa: E501
# The L2 entry of the first sample with the L1 entry of the last: warm in L2 only.
_L2_HIT_L1_MISS = "cache45.l2cm9[0,200-0,H], cache25.l2cm9[9,0], vcache10.cn838[85,85,200-0,M], vcache15.cn838[86,0]"  # noqa: E501


@pytest.mark.parametrize(
    ("x_cache", "via", "expected"),
    [
        ("HIT TCP_MEM_HIT dirn:-2:-2", _L2_HIT_L1_HIT, HIT),
        ("HIT TCP_MEM_HIT dirn:-2:-2", _L2_MISS_L1_HIT, HIT),
        ("MISS TCP_MISS dirn:-2:-2", _BOTH_MISS, MISS),
        ("MISS TCP_MISS dirn:-2:-2", _L2_HIT_L1_MISS, UPPER),
        ("MISS TCP_MISS dirn:-2:-2", None, MISS),  # no Via: nothing proves an L2 copy
    ],
)
def test_aliyun_via_layer_flags_tell_an_l2_hit(
    x_cache: str, via: str | None, expected: CacheStatus
) -> None:  # [A1]
    pairs = [("X-Cache", x_cache)] + ([("Via", via)] if via else [])
    for headers in (httpx.Headers(pairs), dict(pairs)):
        verdict = parse_cache_status(headers, "aliyun")
        assert verdict.status is expected
        assert verdict.header == "X-Cache"
        assert verdict.cached is (expected is not MISS)
    assert parse_cache_status(httpx.Headers(pairs)).status is expected  # detected


def test_cloudfront_via_is_never_read_as_layer_flags() -> None:  # [F1]
    headers = {"X-Cache": "Miss from cloudfront", "Via": "1.1 abc.l2.cloudfront.net (CloudFront)"}
    assert parse_cache_status(headers, "cloudfront").status is MISS


def test_only_edge_and_upper_layer_hits_are_cached() -> None:
    assert {s for s in CacheStatus if s.cached} == {HIT, UPPER}


def test_aliyun_cache_time_alone_is_not_a_hit() -> None:  # [A1]: sent on stored misses too
    headers = {"X-Swift-CacheTime": "3600", "X-Swift-SaveTime": "Thu, 02 Jun 2022 15:25:13 GMT"}
    assert parse_cache_status(headers, "aliyun").status is UNKNOWN


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("HIT", HIT),
        ("MISS", MISS),
        ("EXPIRED", MISS),
        ("STALE", HIT),
        ("BYPASS", MISS),
        ("DYNAMIC", MISS),
        ("REVALIDATED", HIT),
        ("UPDATING", HIT),
        ("NONE", UNKNOWN),
        ("UNKNOWN", UNKNOWN),
        ("hit", HIT),
    ],
)
def test_cloudflare(value: str, expected: CacheStatus) -> None:  # [C1]
    verdict = parse_cache_status({"cf-cache-status": value, "age": "20"}, "cloudflare")
    assert verdict == CacheVerdict(expected, "CF-Cache-Status", value)
    assert parse_cache_status({"CF-Cache-Status": value}).status is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Hit from cloudfront", HIT),
        ("RefreshHit from cloudfront", HIT),
        ("Miss from cloudfront", MISS),
        ("Error from cloudfront", UNKNOWN),
        ("Redirect from cloudfront", UNKNOWN),
        ("LimitExceeded from cloudfront", UNKNOWN),
        ("FunctionGeneratedResponse from cloudfront", UNKNOWN),
    ],
)
def test_cloudfront(value: str, expected: CacheStatus) -> None:  # [F1]
    headers = {
        "X-Cache": value,
        "Via": "1.1 e93599ff228cc924153b1db5ec11dc55.cloudfront.net (CloudFront)",
    }
    assert parse_cache_status(headers, "cloudfront").status is expected
    assert parse_cache_status(headers).status is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("HIT", HIT), ("RefreshHit", HIT), ("MISS", MISS), ("hit", HIT), ("BYPASS", UNKNOWN)],
)
def test_edgeone(value: str, expected: CacheStatus) -> None:  # [E1]
    assert parse_cache_status({"EO-Cache-Status": value}, "edgeone").status is expected
    auto = parse_cache_status({"EO-Cache-Status": value, "Age": "5"})
    if expected is not UNKNOWN:
        assert (auto.status, auto.header) == (expected, "EO-Cache-Status")  # found without a vendor
    else:
        assert auto.header == "EO-Cache-Status"  # an unread EO value still beats Age


def test_vendor_restricts_the_headers_read() -> None:
    headers = {"X-Cache": "HIT TCP_MEM_HIT dirn:-2:-2"}
    assert parse_cache_status(headers, "tencent").status is UNKNOWN
    assert parse_cache_status(headers, "aliyun").status is HIT


def test_unreadable_vendor_header_falls_back_to_the_next_one_but_never_to_age() -> None:
    # Squid's X-Cache-Lookup uses Tencent's name with other words; X-Cache decides.
    squid = {"X-Cache-Lookup": "HIT from cdcnc-253-238:80", "X-Cache": "MISS from cdcnc-253-238"}
    assert parse_cache_status(squid) == CacheVerdict(MISS, "X-Cache", "MISS from cdcnc-253-238")
    dynamic = {"CF-Cache-Status": "NONE", "Age": "300"}
    assert parse_cache_status(dynamic) == CacheVerdict(UNKNOWN, "CF-Cache-Status", "NONE")


@pytest.mark.parametrize(
    ("age", "expected"),
    [("1967830", HIT), ("1", HIT), ("0", UNKNOWN), ("soon", UNKNOWN)],
)
def test_age_is_the_fallback_without_a_vendor_header(age: str, expected: CacheStatus) -> None:
    verdict = parse_cache_status({"Age": age, "Server": "nginx"})
    assert verdict == CacheVerdict(expected, "Age", age)


def test_no_cache_headers_at_all_is_unknown() -> None:
    assert parse_cache_status({"Server": "nginx"}) == CacheVerdict(UNKNOWN)


def test_unknown_vendor_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown CDN vendor"):
        parse_cache_status({}, "akamai")
