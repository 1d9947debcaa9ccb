"""The composed Sandbox: lifecycle, addresses, credentials."""

from __future__ import annotations

import threading

import httpx
import pytest

from cdn_preheat import config
from cdn_preheat.config import Settings
from cdn_preheat.providers.tencent import TencentProvider
from cdn_preheat.sandbox.server import Sandbox, run_forever
from cdn_preheat.sandbox.tencent import TencentLimits


def test_endpoints_and_client_env() -> None:
    with Sandbox(videos=1, segments=2) as box:
        endpoints = box.endpoints
        assert {"origin", "edge", "tencent"} <= set(endpoints)
        assert set(endpoints) == {"origin", "edge", *box.apis}
        assert endpoints["edge"] == box.edge.netloc
        assert box.video_url("demo-1") == endpoints["origin"] + "/vod/demo-1/master.m3u8"
        assert httpx.get(box.video_url("demo-1")).status_code == 200
        expected = {
            "CDN_PROVIDER": "tencent",
            "CDN_HOST": box.edge.netloc,
            "TENCENT_ENDPOINT": endpoints["tencent"],
            "TENCENT_SECRET_ID": config.SANDBOX_TENCENT_SECRET_ID,
            "TENCENT_SECRET_KEY": config.SANDBOX_TENCENT_SECRET_KEY,
        }
        env = box.client_env()
        assert {name: env.get(name) for name in expected} == expected
    with pytest.raises(RuntimeError):
        _ = box.endpoints


def test_a_never_started_sandbox_stops_cleanly() -> None:
    Sandbox(videos=1).stop()


def test_configured_credentials_are_the_ones_accepted() -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        tencent_secret_id="AKIDmine",
        tencent_secret_key="my-own-key",
    )
    with Sandbox.from_settings(settings, videos=1, segments=2) as box:
        env = {
            **box.client_env(),
            "TENCENT_SECRET_ID": "AKIDmine",
            "TENCENT_SECRET_KEY": "my-own-key",
        }
        mine = Settings(_env_file=None, **{k.lower(): v for k, v in env.items()})  # type: ignore[call-arg]
        assert TencentProvider(mine).quota().available == 100_000
        assert box.client_env()["TENCENT_SECRET_KEY"] == "my-own-key"


def test_task_delay_override_leaves_the_given_limits_alone() -> None:
    limits = TencentLimits(task_delay=5)
    box = Sandbox(videos=1, tencent_limits=limits, task_delay=0.1)
    assert (box.tencent.limits.task_delay, limits.task_delay) == (0.1, 5)
    box.stop()


def test_run_forever_serves_until_stopped() -> None:
    ready: list[dict[str, str]] = []
    stop = threading.Event()
    box = Sandbox(videos=1, segments=2)

    def on_ready(endpoints: dict[str, str]) -> None:
        ready.append(endpoints)
        assert httpx.get(endpoints["origin"] + "/vod/demo-1/master.m3u8").status_code == 200
        stop.set()

    thread = threading.Thread(target=run_forever, args=(box, on_ready, stop))
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert ready and ready[0]["edge"] == box.edge.netloc
