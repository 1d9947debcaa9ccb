"""/metrics after a real run: the app with its worker pushing to the sandbox, scraped and
parsed with prometheus_client's own parser."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from service_support import AUTH, sandbox_settings, service_settings

from cdn_preheat.clock import quota_day, utcnow
from cdn_preheat.ledger.base import UrlState
from cdn_preheat.sandbox.server import Sandbox
from cdn_preheat.service import ServiceEngine, create_app
from cdn_preheat.service.app import WorkerThread

AFTER: dict[str, Any] = {}  # answers of the routes called after the scrape


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, ServiceEngine]]:
    """Two videos pushed to done by the app's own worker, then /metrics scraped.

    The worker's idle wait is longer than the test: the second video, queued
    while the worker waits at an empty queue, is pushed only because queueing
    wakes it.
    """
    db = tmp_path_factory.mktemp("metrics") / "ledger.sqlite3"
    with Sandbox(videos=2, segments=4, task_delay=0.05) as box:
        settings = sandbox_settings(box, db)
        engine = ServiceEngine(settings, service_settings())
        worker = WorkerThread(settings, threading.Event(), idle=120)
        with TestClient(create_app(engine, worker=worker), headers=AUTH) as client:
            for video_id in ("demo-1", "demo-2"):
                body = {"video_id": video_id, "m3u8_url": box.video_url(video_id)}
                assert client.post("/v1/videos", json=body).status_code == 202
                deadline = time.monotonic() + 60  # well inside the idle wait
                while client.get(f"/v1/videos/{video_id}").json()["state"] != "done":
                    assert time.monotonic() < deadline, client.get(f"/v1/videos/{video_id}").json()
                    time.sleep(0.1)
                time.sleep(0.3)  # the worker settles into its idle wait
            text = client.get("/metrics").text
            AFTER["verify"] = client.post("/v1/videos/demo-1/verify", json={"sample": 5})
            AFTER["purge"] = client.post("/v1/purge", json={"video_id": "demo-2"})
            yield text, engine
        engine.close()


def test_urls_queue_and_videos_come_from_the_ledger(run: tuple[str, ServiceEngine]) -> None:
    text, engine = run
    found = samples(text)
    counts = engine.ledger.counts()
    target = (("area", "mainland"), ("provider", "tencent"))
    for state in UrlState:
        key = ("cdn_preheat_urls", tuple(sorted((*target, ("state", str(state))))))
        assert found[key] == counts.get(state, 0)
    assert found["cdn_preheat_urls", tuple(sorted((*target, ("state", "done"))))] > 0
    assert found["cdn_preheat_queue_depth", ()] == 0
    assert found["cdn_preheat_videos", (("state", "done"),)] == 2
    assert found["cdn_preheat_videos", (("state", "queued"),)] == 0


def test_quota_gauges_match_the_ledgers_book(run: tuple[str, ServiceEngine]) -> None:
    text, engine = run
    found = samples(text)
    book = engine.ledger.quota_day("tencent", "mainland", quota_day(utcnow(), 8))
    assert book is not None and book.limit is not None
    target = (("area", "mainland"), ("provider", "tencent"))
    assert found["cdn_preheat_quota_limit", target] == book.limit
    assert found["cdn_preheat_quota_remaining", target] == book.remaining


def test_cdn_api_calls_and_push_latency_are_counted(run: tuple[str, ServiceEngine]) -> None:
    text, _ = run
    found = samples(text)
    pushes = found[
        "cdn_preheat_api_requests_total",
        (("api", "PushUrlsCache"), ("outcome", "ok"), ("provider", "tencent")),
    ]
    assert pushes >= 1
    assert found["cdn_preheat_push_latency_seconds_count", (("provider", "tencent"),)] == pushes
    statuses = [
        value for (name, labels), value in found.items()
        if name == "cdn_preheat_api_requests_total" and ("api", "DescribePushTasks") in labels
    ]  # fmt: skip
    assert sum(statuses) >= 1
    families = {family.name: family.type for family in text_string_to_metric_families(text)}
    assert families["cdn_preheat_api_requests"] == "counter"
    assert families["cdn_preheat_push_latency_seconds"] == "histogram"
    assert families["cdn_preheat_webhook_deliveries"] == "counter"
    assert families["cdn_preheat_queue_depth"] == "gauge"


def test_metrics_need_no_token_and_v1_does(run: tuple[str, ServiceEngine]) -> None:
    _, engine = run
    with TestClient(create_app(engine)) as client:
        assert client.get("/metrics").status_code == 200
        assert client.get("/v1/videos").status_code == 401


SUMMED = """
import multiprocessing, sys
from cdn_preheat.config import load_settings
from cdn_preheat.service.engine import ServiceEngine
from cdn_preheat.service.metrics import Metrics

engine = ServiceEngine(load_settings(cdn_preheat_db=sys.argv[1]))
metrics = Metrics(engine)

def count():
    metrics.api_requests.labels("tencent", "PushUrlsCache", "ok").inc()

count()
child = multiprocessing.get_context("fork").Process(target=count)
child.start(); child.join()
sys.stdout.write(metrics.render().body.decode())
"""


@pytest.mark.slow
def test_processes_are_summed_in_multiprocess_mode(tmp_path: Path) -> None:
    shared = tmp_path / "prometheus"
    shared.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(shared)}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SUMMED), str(tmp_path / "l.sqlite3")],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    found = samples(done.stdout)
    key = (("api", "PushUrlsCache"), ("outcome", "ok"), ("provider", "tencent"))
    assert found["cdn_preheat_api_requests_total", key] == 2  # this process and its child
    assert found["cdn_preheat_queue_depth", ()] == 0  # the ledger's figures, once


def test_urls_and_quota_are_labelled_per_target(tmp_path: Path) -> None:
    from cdn_preheat.config import load_settings
    from cdn_preheat.ledger.base import QueuedUrl
    from cdn_preheat.service.metrics import Metrics

    settings = load_settings(
        tencent_endpoint="http://127.0.0.1:9", cdn_preheat_db=str(tmp_path / "l.sqlite3")
    )
    engine = ServiceEngine(settings, service_settings())
    try:
        ledger, now = engine.ledger, utcnow()
        for provider, area, names in (("tencent", "mainland", "ab"), ("qiniu", "global", "cde")):
            urls = [QueuedUrl(f"https://cdn.example.com/{n}.ts", "segment") for n in names]
            ledger.enqueue("v1", provider, area, urls, now, settings.cdn_preheat_max_age)
        day = quota_day(now, 8)
        ledger.sync_quota("qiniu", "global", day, 100, 40)
        found = samples(Metrics(engine).render().body.decode())
    finally:
        engine.close()
    pending = (("state", "pending"),)
    assert found["cdn_preheat_urls", (("area", "mainland"), ("provider", "tencent"), *pending)] == 2
    assert found["cdn_preheat_urls", (("area", "global"), ("provider", "qiniu"), *pending)] == 3
    assert found["cdn_preheat_queue_depth", ()] == 5
    qiniu = (("area", "global"), ("provider", "qiniu"))
    assert (
        found["cdn_preheat_quota_limit", qiniu],
        found["cdn_preheat_quota_remaining", qiniu],
    ) == (
        100,
        60,
    )


def test_verify_and_purge_a_pushed_video(run: tuple[str, ServiceEngine]) -> None:
    verified = AFTER["verify"]
    assert verified.status_code == 200, verified.text
    result = verified.json()
    assert result["video_id"] == "demo-1" and result["passed"] is True
    overall = result["overall"]
    assert overall["misses"] == 0 and overall["hits"] + overall["upper"] > 0
    assert {u["cache"] for u in result["urls"]} <= {"hit", "upper"}
    purged = AFTER["purge"]
    assert purged.status_code == 200, purged.text
    purge = purged.json()
    assert purge["provider"] == "tencent" and purge["submitted"] == purge["urls"] > 0
    assert purge["failures"] == [] and purge["tasks"]
