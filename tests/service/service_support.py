"""Service test helpers: settings for an app over a sandbox, and one over its accounts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cdn_preheat.config import Settings, load_settings
from cdn_preheat.hls import ExpandOptions, expand
from cdn_preheat.sandbox.server import Sandbox
from cdn_preheat.service import ServiceEngine, create_app
from cdn_preheat.service.app import WorkerThread
from cdn_preheat.service.settings import ServiceSettings

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def sandbox_settings(box: Sandbox, db: Path, provider: str = "tencent", **extra: Any) -> Settings:
    env: dict[str, Any] = {k.lower(): v for k, v in box.client_env(provider).items()}
    return load_settings(**env, cdn_preheat_db=str(db), **extra)


def service_settings(**extra: Any) -> ServiceSettings:
    values: dict[str, Any] = {
        "cdn_preheat_api_tokens": TOKEN,
        "cdn_preheat_allowed_networks": "127.0.0.1/32",
    }
    values.update(extra)
    return ServiceSettings(**values)


WEBHOOK_SECRET = "webhook-secret-for-targets"


def received(box: Sandbox, name: str) -> list[str]:
    return box.apis[name].received_urls()  # type: ignore[attr-defined, no-any-return]


def edge_urls(box: Sandbox, video_id: str) -> list[str]:
    options = ExpandOptions(cdn_host=box.edge.netloc)
    return [u.url for u in expand(box.video_url(video_id), options).urls]


class TargetsService:
    """The app with its worker over a targets file of the sandbox's accounts."""

    def __init__(
        self,
        box: Sandbox,
        tmp: Path,
        names: tuple[str, ...],
        monkeypatch: pytest.MonkeyPatch,
        *,
        pools: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
        webhook: str | None = None,
        idle: float = 120,
    ) -> None:
        variables = box.targets_file(tmp / "targets.toml", names, pools=pools)
        variables.update(env or {})
        for name, value in variables.items():
            monkeypatch.setenv(name, value)  # the keys, in the variables the file names
        extra: dict[str, Any] = {}
        if webhook is not None:
            extra = {
                "cdn_preheat_webhook_url": webhook,
                "cdn_preheat_webhook_secret": WEBHOOK_SECRET,
            }
        self.settings = load_settings(
            cdn_preheat_targets=variables["CDN_PREHEAT_TARGETS"],
            cdn_preheat_db=str(tmp / "ledger.sqlite3"),
            **extra,
        )
        self.engine = ServiceEngine(self.settings, service_settings())
        self.worker = WorkerThread(self.settings, threading.Event(), idle=idle)
        self.app = create_app(self.engine, worker=self.worker)
        self.app.state.outbox_poll = 0.1

    def __enter__(self) -> TestClient:
        self.client = TestClient(self.app, headers=AUTH).__enter__()
        return self.client

    def __exit__(self, *exc: object) -> None:
        self.client.__exit__(*exc)
        self.engine.close()

    def wait(
        self, video_id: str, done: Callable[[dict[str, Any]], bool], seconds: float = 60
    ) -> dict[str, Any]:
        """The video's record once ``done(record)`` holds (the worker pushes meanwhile)."""
        deadline = time.monotonic() + seconds
        while True:
            record: dict[str, Any] = self.client.get(f"/v1/videos/{video_id}").json()
            if done(record):
                return record
            assert time.monotonic() < deadline, record
            time.sleep(0.1)


def by_name(entries: list[dict[str, Any]], key: str = "name") -> dict[str, dict[str, Any]]:
    return {entry[key]: entry for entry in entries}
