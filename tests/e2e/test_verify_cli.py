"""`cdn-preheat verify` and `push --verify` against the sandbox edge."""

from __future__ import annotations

from clirun import Cli


def test_verify_reports_hits_for_what_was_prefetched_and_requeues_misses(cli: Cli) -> None:
    url = cli.sandbox.video_url("demo-1")
    pushed = cli("push", "demo-1", url, "--verify", "--json")
    assert pushed.code == 0, pushed.stderr
    assert pushed.json()["edge_hit_ratio"] == 1.0

    evicted = cli.sandbox.edge_url("/vod/demo-1/v1/seg3.ts")
    cli.sandbox.cache.discard(evicted)  # the edge dropped one file
    run = cli("verify", "demo-1", "--all", "--requeue", "--json")
    assert run.code == 0, run.stderr
    report = run.json()
    misses = [u["url"] for u in report["urls"] if u["cache"] == "miss"]
    assert misses == [evicted]
    assert report["overall"]["misses"] == 1
    assert report["overall"]["hits"] == len(report["urls"]) - 1
    assert report["requeued"] == 1
    # Probing with one byte did not warm the edge: a second look still misses.
    again = cli("verify", "demo-1", "--all", "--json").json()
    assert [u["url"] for u in again["urls"] if u["cache"] == "miss"] == [evicted]

    # The requeued URL is pushed again by the worker and the edge holds it after.
    worker = cli("worker", "--once")
    assert worker.code == 0, worker.stderr
    assert cli.sandbox.tencent.received_urls().count(evicted) == 2
    final = cli("verify", "demo-1", "--all", "--json").json()
    assert final["overall"]["misses"] == 0


def test_verify_pinned_to_edges_tells_a_healthy_edge_from_a_broken_one(cli: Cli) -> None:
    assert cli("push", "demo-1", cli.sandbox.video_url("demo-1")).code == 0
    edge = cli.sandbox.endpoints["edge"]  # 127.0.0.1:PORT
    # The sandbox edge listens on 127.0.0.1 only: 127.0.0.2 stands for an edge that is down.
    down = edge.replace("127.0.0.1", "127.0.0.2")
    run = cli("verify", "demo-1", "--sample", "5", "--edge", edge, "--edge", down, "--json")
    assert run.code == 0, run.stderr
    report = run.json()
    edges = report["edges"]
    assert set(edges) == {"127.0.0.1", "127.0.0.2"}
    probes = len(report["urls"]) // 2
    assert edges["127.0.0.1"]["hits"] == probes and edges["127.0.0.1"]["misses"] == 0
    assert edges["127.0.0.2"]["errors"] == probes and edges["127.0.0.2"]["hits"] == 0
    table = cli("verify", "demo-1", "--sample", "5", "--edge", edge, "--edge", down)
    assert "per edge" in table.stderr


def test_verify_of_an_unknown_video_is_bad_input(cli: Cli) -> None:
    run = cli("verify", "nope")
    assert run.code == 2
    assert "nope" in run.stderr
