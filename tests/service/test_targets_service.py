"""The service over several targets (CDN_PREHEAT_TARGETS, docs/targets.md).

The app runs with its own worker, as ``serve`` runs it, against a sandbox with
several accounts (two more Tencent accounts in a pool, Qiniu, EdgeOne) over real
HTTP: a video queued through the API is expanded once and reaches done on every
target, the quota route answers per target, and a target whose key is wrong
fails alone, its sentence in its entries.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from receiver import Receiver
from service_support import WEBHOOK_SECRET as SECRET
from service_support import TargetsService as Service
from service_support import by_name, edge_urls, received

from cdn_preheat.sandbox.edgeone import SANDBOX_ZONE_ID
from cdn_preheat.sandbox.server import Sandbox, TencentAccount
from cdn_preheat.sandbox.tencent import TencentLimits

NAMES = ("tencent", "qiniu", "edgeone", "tencent-b", "tencent-c")
POOL = {"tencent-b": "premiere", "tencent-c": "premiere"}
UNITS = ["tencent", "qiniu", "edgeone", "premiere"]  # a pool is one entry


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    accounts = {
        name: TencentAccount(limits=TencentLimits(task_delay=0.05))
        for name in ("tencent-b", "tencent-c", "tencent-d")
    }
    with Sandbox(videos=6, variants=2, segments=4, task_delay=0.05, tencent_accounts=accounts) as b:
        yield b


def test_a_video_queued_through_the_api_reaches_done_on_every_target(
    box: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    urls = edge_urls(box, "demo-1")
    before = {name: len(received(box, name)) for name in NAMES}
    receiver = Receiver(SECRET).start()
    service = Service(box, tmp_path, NAMES, monkeypatch, pools=POOL, webhook=receiver.url)
    try:
        with service as client:
            body = {"video_id": "demo-1", "m3u8_url": box.video_url("demo-1")}
            answer = client.post("/v1/videos", json=body)
            assert answer.status_code == 202, answer.text
            queued = answer.json()
            assert [t["name"] for t in queued["targets"]] == UNITS
            for target in queued["targets"]:  # every URL queued for every target
                assert target["counts"]["pending"] + target["counts"]["submitted"] + target[
                    "counts"
                ]["done"] == len(urls), target
            assert queued["counts"]["pending"] + queued["counts"]["submitted"] + queued["counts"][
                "done"
            ] == len(urls) * len(UNITS)

            record = service.wait("demo-1", lambda r: r["state"] == "done")
            targets = by_name(record["targets"])
            assert list(targets) == UNITS
            for target in targets.values():
                assert target["state"] == "done", target
                assert target["counts"]["done"] == len(urls), target
                assert target["progress"] == 1.0 and target["error"] is None
            assert targets["edgeone"]["area"] == SANDBOX_ZONE_ID
            assert targets["qiniu"]["provider"] == "qiniu"
            members = by_name(targets["premiere"]["members"])
            assert set(members) == {"tencent-b", "tencent-c"}
            assert sum(m["pushed"] for m in members.values()) == len(urls)
            assert record["counts"]["done"] == len(urls) * len(UNITS)

            # Each account received every URL once; the pool's members none twice.
            for name in ("tencent", "qiniu", "edgeone"):
                assert sorted(received(box, name)[before[name] :]) == sorted(urls), name
            pooled = [u for n in ("tencent-b", "tencent-c") for u in received(box, n)[before[n] :]]
            assert sorted(pooled) == sorted(urls)

            # One video.done, once the video is done on every target.
            deadline = time.monotonic() + 30
            while not any(d.body["type"] == "video.done" for d in receiver.deliveries):
                assert time.monotonic() < deadline, [d.body for d in receiver.deliveries]
                time.sleep(0.1)
            time.sleep(0.5)
            done = [d.body for d in receiver.deliveries if d.body["type"] == "video.done"]
            assert len(done) == 1 and done[0]["video"]["video_id"] == "demo-1"
            assert done[0]["video"]["counts"]["done"] == len(urls) * len(UNITS)
            # It names the targets, and its record has their entries as the route shows them.
            assert done[0]["targets"] == UNITS
            shown = [{k: v for k, v in t.items() if k != "error"} for t in record["targets"]]
            assert done[0]["video"]["targets"] == shown

            again = client.post("/v1/videos", json=body)  # preheated on every target
            assert again.status_code == 200 and again.json()["targets"] == record["targets"]

            # /metrics: URLs per target's ledger key, CDN calls under the target's name.
            from prometheus_client.parser import text_string_to_metric_families

            found = {
                (sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(client.get("/metrics").text)
                for sample in family.samples
            }
            keys = [("tencent", "mainland"), ("qiniu", "global"), ("edgeone", SANDBOX_ZONE_ID),
                    ("premiere", "pool")]  # fmt: skip
            for provider, area in keys:
                labels = (("area", area), ("provider", provider), ("state", "done"))
                assert found["cdn_preheat_urls", labels] == len(urls), provider
            for provider in UNITS:
                calls = [v for (name, labels), v in found.items()
                         if name == "cdn_preheat_api_requests_total"
                         and ("provider", provider) in labels]  # fmt: skip
                assert sum(calls) > 0, provider
    finally:
        receiver.down()


def test_batch_queues_each_video_for_every_target(
    box: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = ("tencent", "qiniu")
    with Service(box, tmp_path, names, monkeypatch) as client:
        videos = [{"video_id": v, "m3u8_url": box.video_url(v)} for v in ("demo-2", "demo-3")]
        videos.append({"video_id": "broken", "m3u8_url": box.video_url("demo-2") + ".gone"})
        answer = client.post("/v1/videos:batch", json={"videos": videos})
        assert answer.status_code == 202
        results = by_name(answer.json()["results"], "video_id")
        assert results["broken"]["status"] == 422 and results["broken"]["error"]
        for video_id in ("demo-2", "demo-3"):
            entry = results[video_id]
            assert entry["status"] == 202, entry
            targets = by_name(entry["video"]["targets"])
            assert list(targets) == list(names)
            found = len(edge_urls(box, video_id))
            assert all(sum(t["counts"].values()) == found for t in targets.values())
        page = client.get("/v1/videos").json()["videos"]
        assert {v["video_id"] for v in page} == {"demo-2", "demo-3"}
        assert all([t["name"] for t in v["targets"]] == list(names) for v in page)


def test_quota_has_one_entry_per_target_and_a_pools_members(
    box: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    box.apis["tencent-b"].limits.push_per_day = 777  # type: ignore[attr-defined]
    box.apis["tencent-c"].limits.push_per_day = 555  # type: ignore[attr-defined]
    try:
        with Service(box, tmp_path, NAMES, monkeypatch, pools=POOL) as client:
            answer = client.get("/v1/quota")
            assert answer.status_code == 200, answer.text
            entries = by_name(answer.json()["quota"], "target")
    finally:
        box.apis["tencent-b"].limits.push_per_day = 100_000  # type: ignore[attr-defined]
        box.apis["tencent-c"].limits.push_per_day = 100_000  # type: ignore[attr-defined]
    assert list(entries) == UNITS
    for entry in entries.values():
        assert set(entry) >= {"target", "provider", "area", "day", "total", "available",
                              "reserved_in_flight", "members", "error"}  # fmt: skip
        assert entry["error"] is None and entry["reserved_in_flight"] == 0
    assert entries["tencent"]["total"] == box.tencent.limits.push_per_day
    pool = entries["premiere"]
    assert pool["total"] == 777 + 555  # the members' quotas add up
    left = by_name(pool["members"])
    assert list(left) == ["tencent-b", "tencent-c"]
    assert 0 < left["tencent-b"]["available"] <= 777 and 0 < left["tencent-c"]["available"] <= 555
    assert pool["available"] == left["tencent-b"]["available"] + left["tencent-c"]["available"]
    assert entries["tencent"]["members"] == []


def test_a_target_with_a_wrong_key_fails_alone_with_its_sentence(
    box: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "not-the-key-of-tencent-d-77"
    names = ("tencent", "tencent-d")
    urls = edge_urls(box, "demo-4")
    service = Service(
        box, tmp_path, names, monkeypatch, env={"SANDBOX_TENCENT_D_KEY_SECRET": wrong}
    )
    with service as client:
        body = {"video_id": "demo-4", "m3u8_url": box.video_url("demo-4")}
        assert client.post("/v1/videos", json=body).status_code == 202
        record = service.wait(
            "demo-4",
            lambda r: r["targets"][0]["state"] == "done" and r["targets"][1]["error"] is not None,
        )
        good, bad = record["targets"]
        assert good["counts"]["done"] == len(urls) and good["error"] is None
        assert bad["counts"]["pending"] == len(urls)  # kept queued: fixed keys push them
        assert bad["state"] == "queued" and record["state"] == "queued"
        assert bad["error"].startswith("target tencent-d: Tencent Cloud rejected the credentials")
        assert "SANDBOX_TENCENT_D_KEY_SECRET" in bad["error"] and wrong not in bad["error"]

        quota = by_name(client.get("/v1/quota").json()["quota"], "target")
        assert quota["tencent"]["error"] is None and quota["tencent"]["total"]
        assert quota["tencent-d"]["total"] is None
        assert quota["tencent-d"]["error"].startswith("target tencent-d: ")
        assert "SANDBOX_TENCENT_D_KEY_SECRET" in quota["tencent-d"]["error"]
        assert wrong not in client.get("/v1/quota").text

        # Cancelled: what the stopped target still held is dropped there (skipped).
        cancelled = client.delete("/v1/videos/demo-4").json()
        assert cancelled["state"] == "cancelled"
        good, bad = cancelled["targets"]
        assert bad["counts"]["pending"] == 0 and bad["counts"]["skipped"] == len(urls)
        assert good["counts"]["done"] == len(urls)

        # The service goes on: the good target still takes videos.
        assert client.get("/readyz").json() == {"status": "ready"}
        more = {"video_id": "demo-5", "m3u8_url": box.video_url("demo-5")}
        assert client.post("/v1/videos", json=more).status_code == 202
        service.wait("demo-5", lambda r: r["targets"][0]["state"] == "done")
    assert received(box, "tencent-d") == []


def test_quota_exhausted_is_sent_for_the_target_that_spent_it(
    box: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    urls = edge_urls(box, "demo-6")
    box.apis["tencent-d"].limits.push_per_day = 3  # type: ignore[attr-defined]
    receiver = Receiver(SECRET).start()
    service = Service(box, tmp_path, ("tencent", "tencent-d"), monkeypatch, webhook=receiver.url)
    try:
        with service as client:
            body = {"video_id": "demo-6", "m3u8_url": box.video_url("demo-6")}
            assert client.post("/v1/videos", json=body).status_code == 202
            record = service.wait("demo-6", lambda r: r["targets"][0]["state"] == "done")
            deadline = time.monotonic() + 30
            while not any(d.body["type"] == "quota.exhausted" for d in receiver.deliveries):
                assert time.monotonic() < deadline, [d.body for d in receiver.deliveries]
                time.sleep(0.1)
            time.sleep(0.5)
            record = client.get("/v1/videos/demo-6").json()
    finally:
        receiver.down()
        box.apis["tencent-d"].limits.push_per_day = 100_000  # type: ignore[attr-defined]
    spent = [d.body for d in receiver.deliveries if d.body["type"] == "quota.exhausted"]
    assert len(spent) == 1
    assert spent[0]["quota"]["provider"] == "tencent-d" and spent[0]["quota"]["limit"] == 3
    assert spent[0]["quota"]["queued"] == len(urls) - 3  # that target's queue only
    assert spent[0]["targets"] == ["tencent-d"]  # the target it is about, by name
    target = by_name(record["targets"])["tencent-d"]
    assert target["counts"]["done"] + target["counts"]["submitted"] == 3
    assert target["counts"]["pending"] == len(urls) - 3
    # The video is not done everywhere: no video.done yet.
    assert not [d for d in receiver.deliveries if d.body["type"] == "video.done"]


@pytest.fixture(scope="module")
def hosts_box() -> Iterator[Sandbox]:
    """Every account owns a domain of its own, each cached on its own: verify tells them apart."""
    accounts = {"tencent-b": TencentAccount(limits=TencentLimits(task_delay=0.05))}
    with Sandbox(
        videos=2, variants=2, segments=4, task_delay=0.05, tencent_accounts=accounts,
        edge_per_account=True,
    ) as b:  # fmt: skip
        yield b


def test_verify_and_purge_answer_per_target_and_a_broken_one_alone(
    hosts_box: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    box, wrong = hosts_box, "wrong-secret-of-tencent-b-31"
    names = ("tencent", "qiniu", "tencent-b")
    service = Service(box, tmp_path, names, monkeypatch,
                      env={"SANDBOX_TENCENT_B_KEY_SECRET": wrong})  # fmt: skip
    with service as client:
        body = {"video_id": "demo-1", "m3u8_url": box.video_url("demo-1")}
        assert client.post("/v1/videos", json=body).status_code == 202
        service.wait(
            "demo-1",
            lambda r: (
                [t["state"] for t in r["targets"][:2]] == ["done", "done"]
                and r["targets"][2]["error"] is not None
            ),
        )
        answer = client.post("/v1/videos/demo-1/verify", json={"sample": 1000})
        assert answer.status_code == 200, answer.text
        checked = answer.json()
        assert checked["video_id"] == "demo-1" and checked["passed"] is False
        entries = by_name(checked["targets"])
        assert list(entries) == list(names)
        for name in ("tencent", "qiniu"):  # its own URLs, at its own host, all cached
            entry = entries[name]
            assert entry["passed"] is True and entry["overall"]["ratio"] == 1.0, entry
            assert entry["cdn_host"] == box.hosts[name]
            assert {u["url"].split("/")[2] for u in entry["urls"]} == {box.hosts[name]}
        cold = entries["tencent-b"]  # nothing pushed there: cold, and only there
        assert cold["passed"] is False and cold["overall"]["ratio"] == 0.0
        assert checked["reason"].startswith("target tencent-b: ")

        purged = client.post("/v1/purge", json={"video_id": "demo-1"})
        assert purged.status_code == 200, purged.text
        result = purged.json()
        assert result["ok"] is False
        rows = by_name(result["targets"])
        assert list(rows) == list(names)
        found = len(edge_urls(box, "demo-1"))
        for name in ("tencent", "qiniu"):
            assert rows[name]["error"] is None and rows[name]["submitted"] == found, rows[name]
        assert rows["tencent-b"]["error"].startswith("target tencent-b: ")
        assert "SANDBOX_TENCENT_B_KEY_SECRET" in rows["tencent-b"]["error"]
        assert wrong not in purged.text and wrong not in answer.text


def test_when_every_target_has_stopped_the_worker_is_down_with_their_sentences(
    box: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "not-the-key-of-tencent-d-19"
    service = Service(
        box, tmp_path, ("tencent-d",), monkeypatch, env={"SANDBOX_TENCENT_D_KEY_SECRET": wrong}
    )
    with service as client:
        body = {"video_id": "demo-3", "m3u8_url": box.video_url("demo-3")}
        assert client.post("/v1/videos", json=body).status_code == 202
        deadline = time.monotonic() + 60
        while service.worker.alive:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        ready = client.get("/readyz")
    assert ready.status_code == 503
    sentence = ready.json()["error"]
    assert sentence.startswith("the worker stopped: every target stopped: target tencent-d: ")
    assert "SANDBOX_TENCENT_D_KEY_SECRET" in sentence and wrong not in sentence
    assert service.worker.error is not None and service.worker.error.exit_code == 2  # type: ignore[attr-defined]
