"""The dashboard in a real headless browser: Debian's Chromium driven by Playwright.

One sandbox, one service (uvicorn on 127.0.0.1:0 with its queue worker) and
one browser for the module. Screenshots are kept under ``test-artifacts/``.
The browser is the system's (``/usr/bin/chromium``, installed by ``.ci/run``);
Playwright never downloads one.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from receiver import Receiver
from service_support import AUTH, TOKEN, sandbox_settings, service_settings
from uvicorn.logging import AccessFormatter

from cdn_preheat.sandbox.server import Sandbox
from cdn_preheat.service import ServiceEngine, create_app
from cdn_preheat.service.app import WorkerThread

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

playwright_api = pytest.importorskip("playwright.sync_api")
if shutil.which(CHROMIUM) is None:  # pragma: no cover - .ci/run installs it
    pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (see .ci/run)")


class AccessLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    with Sandbox(videos=2, segments=4, task_delay=0.1) as sandbox:
        yield sandbox


WEBHOOK_SECRET = "whsec-dashboard-test"


@pytest.fixture(scope="module")
def hooks() -> Iterator[Receiver]:
    receiver = Receiver(WEBHOOK_SECRET).start()
    yield receiver
    receiver.down()


@pytest.fixture(scope="module")
def service(
    box: Sandbox, hooks: Receiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    db = tmp_path_factory.mktemp("dashboard") / "ledger.sqlite3"
    settings = sandbox_settings(
        box, db,
        cdn_preheat_events_origin=box.endpoints["origin"],
        cdn_preheat_webhook_url=hooks.url,
        cdn_preheat_webhook_secret=WEBHOOK_SECRET,
    )  # fmt: skip
    engine = ServiceEngine(settings, service_settings())
    worker = WorkerThread(settings, threading.Event(), idle=0.2)
    app = create_app(engine, worker=worker)
    app.state.outbox_poll = 0.1
    with serving(app) as served:
        yield {**served, "engine": engine}
    engine.close()


@contextlib.contextmanager
def serving(app: Any) -> Iterator[dict[str, Any]]:
    """``app`` on uvicorn at 127.0.0.1:0 in a thread, its access log kept."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="info", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    access = AccessLog()
    access.setFormatter(AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s'))
    logging.getLogger("uvicorn.access").addHandler(access)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the service did not start"
        time.sleep(0.02)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        yield {"base": base, "access": access}
    finally:
        server.should_exit = True
        thread.join(30)
        logging.getLogger("uvicorn.access").removeHandler(access)
        sock.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, service: dict[str, Any]) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(20_000)
    yield tab
    context.close()


def shoot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(page: Any, base: str) -> None:
    page.goto(f"{base}/")
    assert page.locator("h1").inner_text() == "Sign in"
    page.fill("#token", TOKEN)
    page.click("button[type=submit] >> text=Sign in")
    page.wait_for_selector("#queue-form")


def test_queue_a_video_through_the_form_and_watch_it_reach_done(
    page: Any, service: dict[str, Any], box: Sandbox, hooks: Receiver
) -> None:
    base = service["base"]
    sign_in(page, base)
    assert page.locator("#quota .quota-row").count() == 1  # the sandbox's Tencent account
    assert page.locator("#queue-depth .big").inner_text() == "0"
    page.fill("#video_id", "demo-1")
    page.fill("#m3u8_url", box.video_url("demo-1"))
    page.click("#queue-button")
    page.wait_for_url(f"{base}/videos/demo-1")
    # The page reloads itself while the video is in progress (a locator is looked up
    # again in each new document); watch its state until the worker has finished.
    deadline = time.monotonic() + 90
    while page.locator("#video-state").inner_text().strip() != "done":
        assert time.monotonic() < deadline, "the video did not reach done"
        page.wait_for_timeout(200)
    assert page.locator(".rendition-row").count() >= 3  # master folder and its variants
    assert "0 pending" in page.locator("#counts").inner_text()
    assert page.locator("#failures td.muted").inner_text() == "No failures."
    page.click("#verify-button")
    page.wait_for_selector("#verify-result")
    assert "passed" in page.locator("#verify-result").inner_text()
    assert shoot(page, "dashboard-video").stat().st_size > 0
    page.goto(f"{base}/?state=done")
    row = page.locator(".video-row[data-video='demo-1']")
    assert row.locator(".state").inner_text() == "done"
    page.goto(f"{base}/?state=queued")
    assert page.locator(".video-row").count() == 0
    page.goto(f"{base}/")
    used = page.locator("#quota .quota-row td.num").first.inner_text()
    assert int(used) > 0  # the pushed URLs count against today's quota
    assert shoot(page, "dashboard-overview").stat().st_size > 0
    # The service's delivery loop sent the signed video.done event to the receiver.
    deadline = time.monotonic() + 30
    while not hooks.deliveries:
        assert time.monotonic() < deadline, "no webhook event arrived"
        time.sleep(0.05)
    [delivery] = hooks.deliveries
    assert delivery.signature_ok
    assert delivery.body["type"] == "video.done"
    assert delivery.body["video"]["video_id"] == "demo-1"
    assert delivery.body["video"]["state"] == "done"
    record = httpx.get(f"{service['base']}/v1/videos/demo-1", headers=AUTH).json()
    assert set(delivery.body["video"]) == set(record)
    assert delivery.body["video"]["counts"] == record["counts"]
    listed = httpx.get(f"{service['base']}/v1/webhooks/events", headers=AUTH).json()["events"]
    deadline = time.monotonic() + 30
    while listed[0]["state"] != "delivered":  # the 2xx is recorded right after the POST
        assert time.monotonic() < deadline, listed
        time.sleep(0.05)
        listed = httpx.get(f"{service['base']}/v1/webhooks/events", headers=AUTH).json()["events"]
    assert [(e["id"], e["type"], e["attempts"]) for e in listed] == [
        (delivery.body["id"], "video.done", 1)
    ]


def test_the_form_refuses_what_the_api_refuses(page: Any, service: dict[str, Any]) -> None:
    base = service["base"]
    sign_in(page, base)
    page.fill("#video_id", "bad-url")
    page.fill("#m3u8_url", "ftp://origin.example.com/a.m3u8")
    page.click("#queue-button")
    page.wait_for_selector("#form-error")
    api = httpx.post(
        f"{base}/v1/videos",
        json={"video_id": "bad-url", "m3u8_url": "ftp://origin.example.com/a.m3u8"},
        headers=AUTH,
    )
    assert api.status_code == 422
    assert page.locator("#form-error").inner_text() == api.json()["error"]
    assert page.locator("#m3u8_url").input_value() == "ftp://origin.example.com/a.m3u8"
    assert service["engine"].ledger.get_video("bad-url") is None  # nothing written


def test_the_dashboard_needs_a_token_and_keeps_it_out_of_the_log(
    page: Any, service: dict[str, Any]
) -> None:
    base = service["base"]
    page.goto(f"{base}/")
    page.fill("#token", "not-the-token")
    page.click("button[type=submit] >> text=Sign in")
    assert "not one of CDN_PREHEAT_API_TOKENS" in page.locator("#login-error").inner_text()
    assert httpx.get(f"{base}/").status_code == 401
    # ?token= once: kept in the cookie, gone from the address bar.
    page.goto(f"{base}/?token={TOKEN}&state=done")
    assert page.url == f"{base}/?state=done"
    cookie = next(c for c in page.context.cookies() if c["name"] == "cdn_preheat_token")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    # A storage sender's query token never reaches the access log.
    answer = httpx.post(f"{base}/v1/events/s3?token={TOKEN}", json={"Records": []})
    assert answer.status_code == 200
    lines = service["access"].lines
    assert any("/v1/events/s3?token=***" in line for line in lines)
    assert not any(TOKEN in line for line in lines)


@pytest.fixture(scope="module")
def targets_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The service over a targets file: Tencent, a second Tencent account and Qiniu."""
    from service_support import TargetsService

    from cdn_preheat.sandbox.server import TencentAccount
    from cdn_preheat.sandbox.tencent import TencentLimits

    accounts = {"tencent-b": TencentAccount(limits=TencentLimits(task_delay=0.1))}
    with (
        Sandbox(videos=1, segments=4, task_delay=0.1, tencent_accounts=accounts) as box,
        pytest.MonkeyPatch.context() as monkeypatch,
    ):
        tmp = tmp_path_factory.mktemp("targets-dashboard")
        names = ("tencent", "tencent-b", "qiniu")
        service = TargetsService(box, tmp, names, monkeypatch, idle=0.2)
        with serving(service.app) as served:
            yield {**served, "box": box, "names": names}
        service.engine.close()


def test_a_video_queued_through_the_form_reaches_done_on_every_target(
    browser: Any, targets_service: dict[str, Any]
) -> None:
    base, box, names = targets_service["base"], targets_service["box"], targets_service["names"]
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        sign_in(page, base)
        rows = page.locator("#quota .quota-row")
        assert [rows.nth(i).get_attribute("data-target") for i in range(rows.count())] == list(
            names
        )
        page.fill("#video_id", "demo-1")
        page.fill("#m3u8_url", box.video_url("demo-1"))
        page.click("#queue-button")
        page.wait_for_url(f"{base}/videos/demo-1")
        deadline = time.monotonic() + 90  # the page reloads itself while in progress
        while page.locator("#video-state").inner_text().strip() != "done":
            assert time.monotonic() < deadline, "the video did not reach done"
            page.wait_for_timeout(200)
        targets = page.locator("#targets .target-row")
        assert targets.count() == len(names)
        for i, name in enumerate(names):
            row = targets.nth(i)
            assert row.get_attribute("data-target") == name
            assert row.locator(".target-state").inner_text() == "done"
            assert row.locator(".target-progress").inner_text() == "100 %"
        assert shoot(page, "dashboard-targets-video").stat().st_size > 0
    finally:
        context.close()
