"""The sandbox CDN's two layers: where each vendor's prefetch lands, what the edge answers.

Sources (each rule's comment in sandbox/edge.py cites the same):
- Tencent, SDK PushUrlsCacheRequest.Layer: mainland prefetches go to the middle layer,
  overseas ones to the edge unless Layer="middle".
- Alibaba, SDK PushObjectCacheRequest.l_2preload and the PushObjectCache doc: prefetches
  land on L2 (or L3) POPs, never on the client-facing L1.
- Qiniu, developer.qiniu.com/fusion/4155: after a prefetch the first access hits.
- Tencent range origin-pull (cloud.tencent.com/document/product/228/7184): whether a
  ranged answer is stored depends on the domain's setting, so the edge models both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from cdn_preheat.cachestatus import CacheStatus, parse_cache_status
from cdn_preheat.config import Settings
from cdn_preheat.providers import make_provider
from cdn_preheat.sandbox.core import EdgeCache
from cdn_preheat.sandbox.edge import Vendor, default_prefetch_layer
from cdn_preheat.sandbox.server import Sandbox

PROBE = {"Range": "bytes=0-0"}
Start = Callable[[Vendor], Sandbox]


@pytest.fixture
def start() -> Iterator[Start]:
    boxes: list[Sandbox] = []

    def make(vendor: Vendor) -> Sandbox:
        box = Sandbox(videos=1, segments=3, task_delay=0.0, edge_vendor=vendor)
        boxes.append(box.start())
        return box

    yield make
    for box in boxes:
        box.stop()


def _prefetch(box: Sandbox, provider: str, urls: list[str], **env: str) -> None:
    variables = {**box.client_env(provider), **env}
    settings = Settings(_env_file=None, **{k.lower(): v for k, v in variables.items()})  # type: ignore[call-arg]
    cdn = make_provider(settings)
    try:
        cdn.submit(urls)
    finally:
        cdn.close()


def _verdict(url: str, **headers: str) -> CacheStatus:
    return parse_cache_status(httpx.get(url, headers=headers).headers).status


@pytest.mark.parametrize(
    ("provider", "env", "layer"),
    [
        ("tencent", {}, "upper"),  # mainland, no Layer: the middle layer
        ("tencent", {"TENCENT_AREA": "global"}, "upper"),  # its mainland share
        ("tencent", {"TENCENT_AREA": "overseas"}, "edge"),
        ("tencent", {"TENCENT_AREA": "overseas", "TENCENT_LAYER": "middle"}, "upper"),
        ("aliyun", {}, "upper"),
        ("aliyun", {"ALIYUN_L2_PRELOAD": "true"}, "upper"),
        ("qiniu", {}, "edge"),
        ("edgeone", {}, "upper"),  # Mode default: "预热到中间层"
        ("edgeone", {"EO_MODE": "edge"}, "edge"),  # "预热到边缘和中间层"
    ],
)
def test_a_prefetch_fills_the_layer_the_vendor_documents(
    start: Start, provider: Vendor, env: dict[str, str], layer: str
) -> None:
    box = start(provider)
    url = box.edge_url("/vod/demo-1/v0/seg1.ts")
    _prefetch(box, provider, [url], **env)
    httpx.get(url, headers=PROBE)  # the edge settles finished tasks first; a probe stores nothing
    assert box.cache.layer_of(url) == layer


@pytest.mark.parametrize("vendor", ["tencent", "aliyun"])
def test_after_a_middle_layer_prefetch_the_edge_answers_upper_then_hit(
    start: Start, vendor: Vendor
) -> None:
    box = start(vendor)
    url = box.edge_url("/vod/demo-1/v0/seg0.ts")
    cold = box.edge_url("/vod/demo-1/v0/seg2.ts")
    _prefetch(box, vendor, [url])

    assert _verdict(cold, **PROBE) is CacheStatus.MISS
    assert _verdict(url, **PROBE) is CacheStatus.UPPER
    assert _verdict(url, **PROBE) is CacheStatus.UPPER  # the one-byte probe stored nothing
    assert _verdict(url) is CacheStatus.UPPER  # a viewer's GET: served by the upper layer...
    assert _verdict(url, **PROBE) is CacheStatus.HIT  # ...and kept by the edge
    served = [(r.range, r.served) for r in box.edge.requests if r.path.endswith("seg0.ts")]
    assert served == [(PROBE["Range"], "upper")] * 2 + [(None, "upper"), (PROBE["Range"], "edge")]


def test_edges_that_store_ranged_answers_turn_the_second_probe_into_an_edge_hit(
    start: Start,
) -> None:
    box = start("tencent")
    box.edge.range_fills = True  # range origin-pull on (228/7184): the slice is stored
    warm, cold = box.edge_url("/vod/demo-1/v0/seg0.ts"), box.edge_url("/vod/demo-1/v0/seg2.ts")
    _prefetch(box, "tencent", [warm])

    assert [_verdict(warm, **PROBE), _verdict(warm, **PROBE)] == [
        CacheStatus.UPPER,
        CacheStatus.HIT,
    ]
    assert [_verdict(cold, **PROBE), _verdict(cold, **PROBE)] == [CacheStatus.MISS, CacheStatus.HIT]


def test_a_purge_drops_both_layers_and_an_eviction_only_the_edge(start: Start) -> None:
    box = start("tencent")
    url = box.edge_url("/vod/demo-1/v0/seg0.ts")
    box.cache.add(url)
    box.cache.evict_edge(url)
    assert _verdict(url, **PROBE) is CacheStatus.UPPER
    box.cache.discard(url)
    assert _verdict(url, **PROBE) is CacheStatus.MISS
    assert url not in box.cache


def test_the_prefetch_layer_can_be_overridden_where_no_document_settles_it(
    start: Start,
) -> None:
    box = start("qiniu")
    box.cache.prefetch_layer["qiniu"] = "upper"
    url = box.edge_url("/vod/demo-1/v0/seg0.ts")
    _prefetch(box, "qiniu", [url])
    answer = httpx.get(url, headers=PROBE)
    assert answer.headers["x-qnm-cache"] == "Miss,Hit"
    assert parse_cache_status(answer.headers, "qiniu").status is CacheStatus.UPPER


def test_default_layers_and_unknown_vendor() -> None:
    assert default_prefetch_layer("tencent", "mainland") == "upper"
    assert default_prefetch_layer("tencent", "overseas") == "edge"
    with pytest.raises(ValueError, match="unknown CDN vendor"):
        default_prefetch_layer("akamai")
    cache = EdgeCache()
    cache.fill("http://x/a", "upper")
    assert "http://x/a" in cache and not cache.at_edge("http://x/a")


@pytest.mark.parametrize(
    ("middle_layer_says", "default_verdict"), [("HIT", CacheStatus.HIT), ("MISS", CacheStatus.MISS)]
)
def test_edgeone_middle_layer_copies_read_as_the_edge_reports_them(
    start: Start, middle_layer_says: str, default_verdict: CacheStatus
) -> None:
    """edgeone.ai/document/54212 says HIT for "the cache on the EdgeOne node" and names no
    layer: whether a middle-layer copy answers HIT or MISS at the edge is unsettled, so the
    sandbox edge does either. A MISS after a default prefetch is what EO_MODE=edge avoids."""
    box = start("edgeone")
    box.edge.header_overrides["upper"] = [("EO-Cache-Status", middle_layer_says)]
    middle, edge = box.edge_url("/vod/demo-1/v0/seg1.ts"), box.edge_url("/vod/demo-1/v0/seg2.ts")
    _prefetch(box, "edgeone", [middle])
    _prefetch(box, "edgeone", [edge], EO_MODE="edge")
    assert _verdict(middle, **PROBE) is default_verdict
    assert _verdict(edge, **PROBE) is CacheStatus.HIT
