"""`cdn-preheat verify` and `push --verify` against the sandbox edge.

The sandbox CDN has two layers (sandbox/edge.py): Tencent mainland and Alibaba
prefetches fill the middle/L2 layer, so the edge's first answers after a push
are upper-layer hits; Qiniu's fill the edge. verify counts both hits as cached.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from clirun import Cli, base_env

from cdn_preheat.sandbox.edge import Vendor
from cdn_preheat.sandbox.server import Sandbox


def _caches(report: dict[str, object]) -> list[str]:
    return [u["cache"] for u in report["urls"]]  # type: ignore[attr-defined,index]


def test_verify_counts_middle_layer_hits_as_cached_and_requeues_only_misses(cli: Cli) -> None:
    url = cli.sandbox.video_url("demo-1")
    pushed = cli("push", "demo-1", url, "--verify", "--json")
    assert pushed.code == 0, pushed.stderr
    assert pushed.json()["edge_hit_ratio"] == 1.0  # cached in the CDN: the middle layer

    run = cli("verify", "demo-1", "--all", "--requeue", "--json")
    assert run.code == 0, run.stderr
    report = run.json()
    assert set(_caches(report)) == {"upper"}  # Tencent mainland: the middle layer
    assert report["overall"]["ratio"] == 1.0
    assert report["overall"]["edge_ratio"] == 0.0
    assert report["overall"]["upper"] == len(report["urls"])
    assert report["requeued"] == 0  # warm in the CDN: never pushed again
    assert report["passed"] is True

    # The sandbox edge stores no ranged answer (range origin-pull off, Tencent's default):
    # verify's one-byte probes leave the edge as it was, so a second look is the same.
    again = cli("verify", "demo-1", "--all", "--json")
    assert again.code == 0, again.stderr
    assert set(_caches(again.json())) == {"upper"}

    evicted = cli.sandbox.edge_url("/vod/demo-1/v1/seg3.ts")
    cli.sandbox.cache.discard(evicted)  # the CDN dropped one file from every layer
    upper_only = cli.sandbox.edge_url("/vod/demo-1/v1/seg2.ts")
    cli.sandbox.cache.evict_edge(upper_only)  # an edge eviction: the middle layer still has it
    run = cli("verify", "demo-1", "--all", "--requeue", "--json")
    assert run.code == 1  # below the default --min-hit-ratio 1.0
    report = run.json()
    assert [u["url"] for u in report["urls"] if u["cache"] == "miss"] == [evicted]
    assert upper_only not in [u["url"] for u in report["urls"] if u["cache"] == "miss"]
    assert report["requeued"] == 1
    assert report["passed"] is False
    assert cli.status("demo-1")["videos"][0]["state"] == "queued"  # until it is pushed again
    table = cli("verify", "demo-1", "--all")
    assert table.code == 1
    assert "below --min-hit-ratio 100.0%" in table.stderr
    lenient = cli("verify", "demo-1", "--all", "--min-hit-ratio", "0.9")
    assert lenient.code == 0, lenient.stderr

    # The requeued URL is pushed again by the worker and the CDN holds it after.
    worker = cli("worker", "--once")
    assert worker.code == 0, worker.stderr
    assert cli.sandbox.tencent.received_urls().count(evicted) == 2
    final = cli("verify", "demo-1", "--all", "--json")
    assert final.code == 0, final.stderr
    assert final.json()["overall"]["misses"] == 0
    assert cli.status("demo-1")["videos"][0]["state"] == "done"


@pytest.fixture
def vendor_cli(tmp_path: Path) -> Iterator[Callable[[Vendor], Cli]]:
    boxes: list[Sandbox] = []

    def make(vendor: Vendor) -> Cli:
        box = Sandbox(videos=2, segments=4, task_delay=0.2, edge_vendor=vendor).start()
        boxes.append(box)
        (tmp_path / vendor).mkdir()
        return Cli(
            box, tmp_path / vendor, {**base_env(tmp_path / vendor), **box.client_env(vendor)}
        )

    yield make
    for box in boxes:
        box.stop()


@pytest.mark.parametrize(
    ("vendor", "verdict"),
    # EdgeOne: EO-Cache-Status HIT from the middle layer its default prefetch fills.
    [("aliyun", "upper"), ("qiniu", "hit"), ("edgeone", "hit")],
)
def test_verify_after_a_push_on_each_vendor(
    vendor_cli: Callable[[Vendor], Cli], vendor: Vendor, verdict: str
) -> None:
    cli = vendor_cli(vendor)
    assert cli("push", "demo-1", cli.sandbox.video_url("demo-1")).code == 0
    run = cli("verify", "demo-1", "--all", "--requeue", "--json")
    assert run.code == 0, run.stderr
    assert set(_caches(run.json())) == {verdict}  # Alibaba: an L2 hit read from Via
    assert run.json()["requeued"] == 0


def test_with_edges_that_store_ranged_answers_a_second_verify_sees_edge_hits(cli: Cli) -> None:
    cli.sandbox.edge.range_fills = True  # range origin-pull on: the probed slice is kept
    assert cli("push", "demo-1", cli.sandbox.video_url("demo-1")).code == 0
    first = cli("verify", "demo-1", "--all", "--json")
    second = cli("verify", "demo-1", "--all", "--json")
    assert (first.code, second.code) == (0, 0)
    assert set(_caches(first.json())) == {"upper"}
    assert set(_caches(second.json())) == {"hit"}  # the first probes brought them to the edge


def test_verify_all_shows_progress_on_a_terminal(cli: Cli) -> None:
    assert cli("push", "demo-1", cli.sandbox.video_url("demo-1")).code == 0
    terminal = {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "0"}  # Rich: stderr is a terminal
    run = cli("verify", "demo-1", "--all", extra_env=terminal)
    probes = len(cli("verify", "demo-1", "--all", "--json").json()["urls"])
    assert run.code == 0, run.stderr
    assert re.search(rf"probing.*{probes}/{probes}", run.stderr), run.stderr
    assert "probing" not in cli("verify", "demo-1", "--all").stderr  # not a terminal: no bar


def test_verify_pinned_to_edges_tells_a_healthy_edge_from_a_broken_one(cli: Cli) -> None:
    assert cli("push", "demo-1", cli.sandbox.video_url("demo-1")).code == 0
    edge = cli.sandbox.endpoints["edge"]  # 127.0.0.1:PORT
    # The sandbox edge listens on 127.0.0.1 only: 127.0.0.2 stands for an edge that is down.
    down = edge.replace("127.0.0.1", "127.0.0.2")
    run = cli("verify", "demo-1", "--sample", "5", "--edge", edge, "--edge", down, "--json")
    assert run.code == 1  # a probe without an answer fails the gate
    report = run.json()
    edges = report["edges"]
    assert set(edges) == {"127.0.0.1", "127.0.0.2"}
    probes = len(report["urls"]) // 2
    assert edges["127.0.0.1"]["upper"] == probes and edges["127.0.0.1"]["misses"] == 0
    assert edges["127.0.0.2"]["errors"] == probes and edges["127.0.0.2"]["hits"] == 0
    table = cli("verify", "demo-1", "--sample", "5", "--edge", edge, "--edge", down)
    assert "per edge" in table.stderr
    assert f"{probes} probes got no answer" in table.stderr
    healthy = cli("verify", "demo-1", "--sample", "5", "--edge", edge)
    assert healthy.code == 0, healthy.stderr


def test_verify_of_an_unknown_video_is_bad_input(cli: Cli) -> None:
    run = cli("verify", "nope")
    assert run.code == 2
    assert "nope" in run.stderr


def test_min_hit_ratio_out_of_range_is_bad_input(cli: Cli) -> None:
    run = cli("verify", "demo-1", "--min-hit-ratio", "1.5")
    assert run.code == 2
