"""Dashboard pages without a browser: paging, filters, sign-in, and the webhook settings."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from service_support import AUTH, TOKEN, service_settings

from cdn_preheat.config import load_settings
from cdn_preheat.errors import ConfigError
from cdn_preheat.ledger.base import VideoState
from cdn_preheat.service import ServiceEngine, create_app, dashboard

T0 = dt.datetime(2026, 12, 2, 1, 0, tzinfo=dt.UTC)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[ServiceEngine]:
    # No CDN credentials: the quota cannot be read, the pages still render.
    settings = load_settings(cdn_preheat_db=str(tmp_path / "ledger.sqlite3"))
    engine = ServiceEngine(settings, service_settings())
    for n in range(5):
        engine.ledger.put_video(f"v{n}", f"https://origin.example.com/v{n}.m3u8", 0,
                                T0 + dt.timedelta(minutes=n))  # fmt: skip
    engine.ledger.set_video_state("v3", VideoState.DONE, T0)
    yield engine
    engine.close()


@pytest.fixture
def client(engine: ServiceEngine, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setattr(dashboard, "PAGE_SIZE", 2)
    with TestClient(create_app(engine), cookies={dashboard.COOKIE: TOKEN}) as test_client:
        yield test_client


def shown(html: str) -> list[str]:
    return [part.split('"', 1)[0] for part in html.split('data-video="')[1:]]


def test_videos_are_paged_and_filtered_by_state(client: TestClient) -> None:
    first = client.get("/")
    assert first.status_code == 200
    assert shown(first.text) == ["v0", "v1"]
    assert "TENCENT_SECRET_ID is not set" in first.text  # the quota's reason, shown
    cursor = first.text.split('id="next-page" href="/?cursor=', 1)[1].split('"', 1)[0]
    second = client.get(f"/?cursor={cursor}")
    assert shown(second.text) == ["v2", "v3"]
    assert shown(client.get("/?state=done").text) == ["v3"]
    assert shown(client.get("/?state=queued").text) == ["v0", "v1"]
    assert 'id="next-page"' not in client.get("/?state=done").text
    assert "cursor is not one this API returned" in client.get("/?cursor=bogus").text


def test_a_video_page_and_a_missing_one(client: TestClient) -> None:
    page = client.get("/videos/v3")
    assert page.status_code == 200 and 'id="video-state">done<' in page.text
    assert "Not verified yet." in page.text
    assert client.get("/videos/nope").status_code == 404


def test_sign_in_takes_only_a_configured_token(engine: ServiceEngine) -> None:
    with TestClient(create_app(engine)) as anonymous:
        assert anonymous.get("/").status_code == 401
        refused = anonymous.post("/login", data={"token": "wrong", "next": "/"})
        assert refused.status_code == 401 and "Sign in" in refused.text
        signed = anonymous.post(
            "/login", data={"token": TOKEN, "next": "//evil.example.com/"}, follow_redirects=False
        )
        assert signed.status_code == 303 and signed.headers["location"] == "/"
        assert "HttpOnly" in signed.headers["set-cookie"]
        assert "SameSite=strict" in signed.headers["set-cookie"]
        assert anonymous.get("/").status_code == 200  # the cookie now
        # The bearer API is unchanged by the cookie: it still wants its header.
        assert anonymous.get("/v1/videos").status_code == 401
        assert anonymous.get("/v1/videos", headers=AUTH).status_code == 200


def test_a_webhook_url_without_its_secret_stops_the_service(tmp_path: Path) -> None:
    settings = load_settings(
        cdn_preheat_db=str(tmp_path / "l.sqlite3"),
        cdn_preheat_webhook_url="https://hooks.example.com/cdn",
    )
    engine = ServiceEngine(settings, service_settings())
    with (
        pytest.raises(ConfigError, match="CDN_PREHEAT_WEBHOOK_SECRET is not"),
        TestClient(create_app(engine)),
    ):
        pass
    engine.close()


def test_the_webhook_url_must_be_http(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CDN_PREHEAT_WEBHOOK_URL is invalid"):
        load_settings(cdn_preheat_webhook_url="ftp://hooks.example.com/")


# Targets (CDN_PREHEAT_TARGETS) --------------------------------------------------


def rows(html: str, css: str, attribute: str) -> dict[str, str]:
    """Each ``<tr class="css" attribute="NAME" ...>...</tr>`` by NAME."""
    found = {}
    for part in html.split(f'<tr class="{css}"')[1:]:
        name = part.split(f'{attribute}="', 1)[1].split('"', 1)[0]
        found[name] = part.split("</tr>", 1)[0]
    return found


def test_quota_bars_and_video_progress_per_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service_support import TargetsService, edge_urls

    from cdn_preheat.sandbox.server import Sandbox, TencentAccount
    from cdn_preheat.sandbox.tencent import TencentLimits

    wrong = "wrong-secret-of-tencent-d-58"
    accounts = {
        name: TencentAccount(limits=TencentLimits(task_delay=0.05, push_per_day=quota))
        for name, quota in (("tencent-b", 400), ("tencent-c", 300), ("tencent-d", 1000))
    }
    with Sandbox(videos=1, segments=4, task_delay=0.05, tencent_accounts=accounts) as box:
        names = ("tencent", "qiniu", "tencent-b", "tencent-c", "tencent-d")
        service = TargetsService(
            box, tmp_path, names, monkeypatch,
            pools={"tencent-b": "premiere", "tencent-c": "premiere"},
            env={"SANDBOX_TENCENT_D_KEY_SECRET": wrong},
        )  # fmt: skip
        with service as client:
            client.cookies.set(dashboard.COOKIE, TOKEN)
            body = {"video_id": "demo-1", "m3u8_url": box.video_url("demo-1")}
            assert client.post("/v1/videos", json=body).status_code == 202
            service.wait(
                "demo-1",
                lambda r: (
                    [t["state"] for t in r["targets"][:3]] == ["done"] * 3
                    and r["targets"][3]["error"] is not None
                ),
            )
            index = client.get("/")
            page = client.get("/videos/demo-1")
            verified = client.post("/videos/demo-1/verify", data={"sample": "50"})
        urls = len(edge_urls(box, "demo-1"))
    assert index.status_code == 200 and page.status_code == 200

    quota = rows(index.text, "quota-row", "data-target")
    assert list(quota) == ["tencent", "qiniu", "premiere", "tencent-d"]
    assert 'class="used"' in quota["tencent"]  # a bar of today's use
    assert f"{urls} of 700" in quota["premiere"]  # the pool: its members' quotas added up
    members = rows(index.text, "quota-member", "data-member")
    assert list(members) == ["tencent-b", "tencent-c"]
    assert "target tencent-d: Tencent Cloud rejected the credentials" in quota["tencent-d"]
    assert "SANDBOX_TENCENT_D_KEY_SECRET" in quota["tencent-d"]
    assert wrong not in index.text

    targets = rows(page.text, "target-row", "data-target")
    assert list(targets) == ["tencent", "qiniu", "premiere", "tencent-d"]
    for name in ("tencent", "qiniu", "premiere"):
        assert ">done<" in targets[name] and "width: 100%" in targets[name], name
        assert "100 %" in targets[name]
    assert ">queued<" in targets["tencent-d"] and "0 %" in targets["tencent-d"]
    assert page.text.count('class="error target-error"') == 1
    assert "target tencent-d: Tencent Cloud rejected the credentials" in page.text
    pushed = rows(page.text, "target-member", "data-member")
    assert list(pushed) == ["tencent-b", "tencent-c"]
    assert wrong not in page.text

    assert verified.status_code == 200  # the redirect back to the video page, followed
    checked = rows(verified.text, "verify-target", "data-target")
    assert list(checked) == ["tencent", "qiniu", "premiere", "tencent-d"]
    # One domain for every account here: each target's probes are its own rows, at that host.
    assert '<span class="state done">passed</span>' in checked["tencent"]
    assert f'<td class="num">{urls}</td>' in checked["premiere"]  # edge hits: every URL


def test_a_daily_limit_known_before_todays_use_renders(
    engine: ServiceEngine, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Qiniu has no quota API: the ledger learns the limit, and today's use may not
    # be known yet. The page once multiplied None there and answered 500.
    async def learned_limit_only() -> list[dict[str, object]]:
        return [
            {"provider": "qiniu", "area": "global", "day": "2026-12-02", "total": 20000,
             "available": None, "used_today": None, "reserved_in_flight": 0},
        ]  # fmt: skip

    monkeypatch.setattr(engine, "quota", learned_limit_only)
    page = client.get("/")
    assert page.status_code == 200
    assert "20000 a day; used today not known yet" in page.text
    assert 'class="used"' not in page.text  # no bar drawn from an unknown use
