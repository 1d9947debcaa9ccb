"""The /v1 API over a sandbox: routes, bodies, errors, auth; one app for the module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from service_support import AUTH, TOKEN, sandbox_settings, service_settings

from cdn_preheat.ledger.base import UrlState
from cdn_preheat.sandbox.server import Sandbox
from cdn_preheat.service import ServiceEngine, create_app


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    with Sandbox(videos=6, segments=6, task_delay=0.1) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def engine(box: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceEngine]:
    db = tmp_path_factory.mktemp("api") / "ledger.sqlite3"
    engine = ServiceEngine(sandbox_settings(box, db), service_settings())
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def client(engine: ServiceEngine) -> Iterator[TestClient]:
    with TestClient(create_app(engine), headers=AUTH) as test_client:
        yield test_client


def test_health_and_readiness_need_no_token(client: TestClient) -> None:
    bare = {"Authorization": ""}
    assert client.get("/healthz", headers=bare).json() == {"status": "ok"}
    assert client.get("/readyz", headers=bare).json() == {"status": "ready"}


@pytest.mark.parametrize("header", ["", "Bearer wrong-token", f"Basic {TOKEN}", TOKEN])
def test_v1_refuses_a_missing_or_wrong_token(client: TestClient, header: str) -> None:
    answer = client.get("/v1/videos", headers={"Authorization": header})
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.json() == {
        "error": "a valid API token is required; send it as a bearer token in the Authorization"
        " header."
    }


def test_post_queues_a_video_and_the_same_again_queues_nothing(
    client: TestClient, box: Sandbox, engine: ServiceEngine
) -> None:
    body = {"video_id": "demo-1", "m3u8_url": box.video_url("demo-1")}
    first = client.post("/v1/videos", json=body)
    assert first.status_code == 202, first.text
    record = first.json()
    assert set(record) == {
        "video_id", "m3u8_url", "state", "counts", "created_at", "updated_at", "errors",
    }  # fmt: skip
    assert record["video_id"] == "demo-1" and record["state"] == "queued"
    assert set(record["counts"]) == {"pending", "submitted", "done", "failed", "invalid", "skipped"}
    queued = record["counts"]["pending"]
    assert queued > 0 and queued == engine.ledger.counts("demo-1")[UrlState.PENDING]

    again = client.post("/v1/videos", json=body)
    assert again.status_code == 200
    assert again.json()["counts"] == record["counts"]
    assert engine.ledger.counts()[UrlState.PENDING] == queued

    fetched = client.get("/v1/videos/demo-1")
    assert fetched.status_code == 200 and fetched.json() == again.json()


def test_queueing_spends_no_cdn_api_call(client: TestClient, box: Sandbox) -> None:
    before = dict(box.tencent.actions)
    body = {"video_id": "no-calls", "m3u8_url": box.video_url("demo-3")}
    assert client.post("/v1/videos", json=body).status_code == 202
    assert dict(box.tencent.actions) == before  # no DescribePushQuota per video


def test_reset_queues_the_video_again(client: TestClient, box: Sandbox) -> None:
    body = {"video_id": "demo-2", "m3u8_url": box.video_url("demo-2"), "head_first": "fifo"}
    assert client.post("/v1/videos", json=body).status_code == 202
    assert client.post("/v1/videos", json={**body, "reset": True}).status_code == 202


@pytest.mark.parametrize(
    ("body", "sentence"),
    [
        ({"video_id": "x", "m3u8_url": "https://o.example.com/a.m3u8", "colour": "red"},
         "unknown field 'colour'; see /docs for the fields this route takes."),
        ({"video_id": "x" * 257, "m3u8_url": "https://o.example.com/a.m3u8"},
         "video_id: video_id is longer than 256 characters."),
        ({"video_id": "ep\n1", "m3u8_url": "https://o.example.com/a.m3u8"},
         "video_id: video_id holds control characters."),
        ({"video_id": "x", "m3u8_url": "file:///etc/passwd"},
         "m3u8_url: m3u8_url must be an http(s) URL."),
        ({"video_id": "x", "m3u8_url": "https://o.example.com/a.m3u8", "head_first": "soon"},
         "--head-first takes a segment count, seconds like 60s, or fifo: 'soon'."),
        ({"m3u8_url": "https://o.example.com/a.m3u8"}, "video_id is required."),
    ],
)  # fmt: skip
def test_bad_bodies_are_one_sentence_and_write_nothing(
    client: TestClient, engine: ServiceEngine, body: dict[str, object], sentence: str
) -> None:
    before = engine.ledger.list_videos()
    answer = client.post("/v1/videos", json=body)
    assert answer.status_code == 422
    assert answer.json() == {"error": sentence}
    assert engine.ledger.list_videos() == before


def test_a_body_that_is_not_json_is_one_sentence(client: TestClient) -> None:
    answer = client.post(
        "/v1/videos", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 422
    assert answer.json() == {"error": "the body is not valid JSON."}


def test_a_body_over_one_mib_is_413(client: TestClient, engine: ServiceEngine) -> None:
    before = engine.ledger.list_videos()
    big = b'{"video_id": "big", "m3u8_url": "https://o.example.com/' + b"a" * (1 << 20) + b'"}'
    answer = client.post("/v1/videos", content=big, headers={"Content-Type": "application/json"})
    assert answer.status_code == 413
    assert answer.json() == {"error": "the request body is over 1024 KiB; send less at a time."}

    def chunks() -> Iterator[bytes]:
        yield big[: len(big) // 2]
        yield big[len(big) // 2 :]

    streamed = client.post(
        "/v1/videos", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert streamed.status_code == 413
    assert engine.ledger.list_videos() == before


def test_unknown_video_is_404_with_an_error(client: TestClient) -> None:
    for answer in (
        client.get("/v1/videos/nope"),
        client.delete("/v1/videos/nope"),
        client.post("/v1/videos/nope/verify", json={"sample": 3}),
    ):
        assert answer.status_code == 404
        assert answer.json() == {"error": "no video 'nope' in the ledger."}
    missing = client.get("/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.json() == {"error": "no such route: GET /v1/nothing-here."}


def test_a_playlist_that_fails_is_422_and_writes_nothing(
    client: TestClient, box: Sandbox, engine: ServiceEngine
) -> None:
    url = box.video_url("no-such-video")
    answer = client.post("/v1/videos", json={"video_id": "ghost", "m3u8_url": url})
    assert answer.status_code == 422
    assert answer.json()["error"].startswith(url)
    assert engine.ledger.get_video("ghost") is None


def test_a_url_the_service_may_not_fetch_is_422_before_any_fetch(
    client: TestClient, engine: ServiceEngine
) -> None:
    metadata = client.post(
        "/v1/videos",
        json={"video_id": "ssrf", "m3u8_url": "http://169.254.169.254/latest/meta-data/"},
    )
    assert metadata.status_code == 422
    assert metadata.json() == {
        "error": "m3u8_url is refused: 169.254.169.254 is a link-local address, which the"
        " service does not fetch (CDN_PREHEAT_ALLOWED_NETWORKS lists the exceptions)."
    }
    assert engine.ledger.get_video("ssrf") is None


def test_batch_reports_each_video_in_its_own_entry(
    client: TestClient, box: Sandbox, engine: ServiceEngine
) -> None:
    known = {"video_id": "batch-known", "m3u8_url": box.video_url("demo-1")}
    assert client.post("/v1/videos", json=known).status_code == 202
    videos = [
        {"video_id": "batch-new", "m3u8_url": box.video_url("demo-3")},
        {"video_id": "broken", "m3u8_url": box.video_url("missing")},
        known,
    ]
    answer = client.post("/v1/videos:batch", json={"videos": videos})
    assert answer.status_code == 202
    results = answer.json()["results"]
    assert [(r["video_id"], r["status"]) for r in results] == [
        ("batch-new", 202), ("broken", 422), ("batch-known", 200),
    ]  # fmt: skip
    assert results[0]["video"]["counts"]["pending"] > 0
    assert results[1]["video"] is None and "HTTP 404" in results[1]["error"]
    assert engine.ledger.get_video("broken") is None
    too_many = client.post("/v1/videos:batch", json={"videos": [videos[0]] * 1001})
    assert too_many.status_code == 422
    assert too_many.json() == {
        "error": "videos: List should have at most 1000 items after validation, not 1001."
    }


def test_list_pages_with_a_cursor_and_filters_by_state(client: TestClient, box: Sandbox) -> None:
    for n in (1, 2, 3, 4, 5):
        body = {"video_id": f"list-{n}", "m3u8_url": box.video_url(f"demo-{n}")}
        assert client.post("/v1/videos", json=body).status_code == 202
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/videos", params=params).json()
        assert len(page["videos"]) <= 2
        seen += [v["video_id"] for v in page["videos"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    everything = client.get("/v1/videos", params={"limit": 500}).json()
    assert seen == [v["video_id"] for v in everything["videos"]]
    assert len(seen) == len(set(seen)) >= 5
    assert client.get("/v1/videos", params={"state": "done"}).json() == {
        "videos": [], "next_cursor": None,
    }  # fmt: skip
    bad = client.get("/v1/videos", params={"cursor": "garbage!"})
    assert bad.status_code == 422
    assert bad.json() == {"error": "cursor is not one this API returned; start without it."}


def test_delete_stops_the_pending_urls(
    client: TestClient, box: Sandbox, engine: ServiceEngine
) -> None:
    body = {"video_id": "demo-6", "m3u8_url": box.video_url("demo-6")}
    queued = client.post("/v1/videos", json=body).json()["counts"]["pending"]
    answer = client.delete("/v1/videos/demo-6")
    assert answer.status_code == 200
    counts = answer.json()["counts"]
    assert counts["pending"] == 0 and counts["skipped"] == queued
    assert engine.ledger.counts("demo-6").get(UrlState.PENDING, 0) == 0
    assert answer.json()["state"] == "cancelled"
    again = client.post("/v1/videos", json=body)
    assert again.status_code == 200 and again.json()["counts"]["pending"] == 0
    requeued = client.post("/v1/videos", json={**body, "reset": True})
    assert requeued.status_code == 202 and requeued.json()["counts"]["pending"] == queued


def test_a_reset_whose_playlist_fails_leaves_the_record(
    client: TestClient, box: Sandbox, engine: ServiceEngine
) -> None:
    body = {"video_id": "keep-me", "m3u8_url": box.video_url("demo-2")}
    before = client.post("/v1/videos", json=body).json()
    broken = {"video_id": "keep-me", "m3u8_url": box.video_url("gone"), "reset": True}
    answer = client.post("/v1/videos", json=broken)
    assert answer.status_code == 422 and "HTTP 404" in answer.json()["error"]
    assert client.get("/v1/videos/keep-me").json() == before


def test_quota_per_provider_and_area(client: TestClient) -> None:
    answer = client.get("/v1/quota")
    assert answer.status_code == 200
    (entry,) = answer.json()["quota"]
    assert (entry["provider"], entry["area"]) == ("tencent", "mainland")
    assert entry["total"] > 0 and entry["available"] is not None


def test_openapi_lists_the_v1_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/v1/videos", "/v1/videos:batch", "/v1/videos/{video_id}", "/v1/videos/{video_id}/verify",
        "/v1/purge", "/v1/quota", "/healthz", "/readyz",
    } <= set(paths)  # fmt: skip
    assert client.get("/docs").status_code == 200


def test_ids_with_slashes_reach_their_routes(client: TestClient, box: Sandbox) -> None:
    body = {"video_id": "vod/film 1/master", "m3u8_url": box.video_url("demo-4")}
    assert client.post("/v1/videos", json=body).status_code == 202
    fetched = client.get("/v1/videos/vod/film%201/master")
    assert fetched.status_code == 200 and fetched.json()["video_id"] == "vod/film 1/master"
    unknown = client.post("/v1/videos/vod/nope/master/verify", json={"sample": 1})
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "no video 'vod/nope/master' in the ledger."}
