"""The public library API (``cdn_preheat.Preheater`` / ``AsyncPreheater``) on the sandbox.

One sandbox for the module; each test has its own ledger file. The async tests
run inside a running event loop (anyio's pytest plugin, asyncio backend).
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import cdn_preheat
from cdn_preheat import (
    AsyncPreheater,
    ConfigError,
    InputError,
    Observer,
    Preheater,
    PushResult,
    UrlState,
    VideoState,
)
from cdn_preheat.config import load_settings
from cdn_preheat.ledger.sqlite import SqliteLedger
from cdn_preheat.sandbox.server import Sandbox


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    with Sandbox(videos=3, variants=2, segments=6, task_delay=0.05) as sandbox:
        yield sandbox


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def arguments(box: Sandbox, ledger: Path) -> dict[str, Any]:
    """Plain arguments for the sandbox's Tencent account (no environment involved)."""
    env = box.client_env("tencent")
    return {
        "provider": "tencent",
        "credentials": {
            "secret_id": env["TENCENT_SECRET_ID"],
            "secret_key": env["TENCENT_SECRET_KEY"],
        },
        "ledger": str(ledger),
        "cdn_host": env["CDN_HOST"],
        "endpoint": env["TENCENT_ENDPOINT"],
        "invalid_retry_seconds": 0.1,
    }


FAST = {"poll_interval": 0.1}  # the sandbox finishes tasks in 50 ms


def test_the_package_exports_a_curated_surface() -> None:
    assert "Preheater" in cdn_preheat.__all__
    assert "AsyncPreheater" in cdn_preheat.__all__
    assert "PreheatError" in cdn_preheat.__all__
    for name in cdn_preheat.__all__:
        assert getattr(cdn_preheat, name) is not None
    assert "pipeline" not in cdn_preheat.__all__
    with pytest.raises(AttributeError):
        _ = cdn_preheat.NoSuchName  # type: ignore[attr-defined]


def test_preheat_from_plain_arguments_ignores_the_environment(
    box: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The environment and a .env point elsewhere, with wrong keys: none of it is read.
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("CDN_PROVIDER=qiniu\nTENCENT_SECRET_KEY=wrong\n")
    monkeypatch.setenv("CDN_PREHEAT_DB", str(tmp_path / "from-env.sqlite3"))
    monkeypatch.setenv("TENCENT_SECRET_ID", "wrong-id")
    monkeypatch.setenv("CDN_PREHEAT_STORE", "mongodb")
    ledger = tmp_path / "mine.sqlite3"

    with Preheater(**arguments(box, ledger)) as preheater:
        result = preheater.preheat("api-1", box.video_url("demo-1"), **FAST)
        status = preheater.status("api-1")

    assert isinstance(result, PushResult)
    assert result.run is not None
    assert result.video.found > 0
    assert result.run.done == result.video.found == result.video.queued
    assert result.run.error is None and not result.run.tracking_timed_out
    assert status.videos[0].state is VideoState.DONE
    assert status.total[UrlState.DONE] == result.video.found
    assert ledger.exists()
    assert not (tmp_path / "from-env.sqlite3").exists()


def test_a_second_preheat_is_already_preheated(box: Sandbox, tmp_path: Path) -> None:
    with Preheater(**arguments(box, tmp_path / "l.sqlite3")) as preheater:
        preheater.preheat("api-2", box.video_url("demo-2"), **FAST)
        again = preheater.preheat("api-2", box.video_url("demo-2"), **FAST)
        dry = preheater.preheat("api-2", box.video_url("demo-2"), reset=True, dry_run=True, **FAST)

    assert again.video.already_preheated
    assert again.run is None
    assert dry.dry_run and dry.run is None
    assert dry.video.would_push == 0  # the ledger still holds it: a dry run changes nothing


def test_a_provider_whose_variables_are_not_named_after_it_from_plain_arguments(
    box: Sandbox, tmp_path: Path
) -> None:
    """EdgeOne's keys are TENCENT_SECRET_*, its area EO_ZONE_ID, its endpoint EO_ENDPOINT:
    the plain arguments find them through its registration."""
    env = box.client_env("edgeone")
    with Preheater(
        provider="edgeone",
        credentials={
            "secret_id": env["TENCENT_SECRET_ID"],
            "secret_key": env["TENCENT_SECRET_KEY"],
        },
        area=env["EO_ZONE_ID"],
        endpoint=env["EO_ENDPOINT"],
        ledger=str(tmp_path / "eo.sqlite3"),
        cdn_host=env["CDN_HOST"],
    ) as preheater:
        result = preheater.preheat("eo-1", box.video_url("demo-3"), **FAST)
        assert preheater.provider.area == env["EO_ZONE_ID"]
    assert result.run is not None and result.run.error is None
    assert result.run.done == result.video.found > 0
    assert set(box.edgeone.received_urls()) >= {box.edge_url("/vod/demo-3/master.m3u8")}


def test_from_settings_and_bad_arguments(box: Sandbox, tmp_path: Path) -> None:
    env = {k.lower(): v for k, v in box.client_env("tencent").items()}
    settings = load_settings(**env, cdn_preheat_db=str(tmp_path / "s.sqlite3"))
    with Preheater.from_settings(settings) as preheater:
        assert preheater.quota().provider == "tencent"
        with pytest.raises(InputError, match="empty video id"):
            preheater.preheat(" ", box.video_url("demo-1"), **FAST)
        with pytest.raises(InputError, match="no video 'nope'"):
            preheater.status("nope")
    with pytest.raises(ConfigError, match="'password' is not a setting of the tencent provider"):
        Preheater(provider="tencent", credentials={"password": "x"})
    with pytest.raises(ConfigError, match="CDN_PREHEAT_CONCURRENCY"):
        Preheater(provider="tencent", concurrency=0)


def test_queue_reports_a_failing_playlist_as_its_own_entry(box: Sandbox, tmp_path: Path) -> None:
    class Seen(Observer):
        def __init__(self) -> None:
            self.videos: list[str] = []
            self.pushed_urls = 0

        def queued(self, video: Any) -> None:
            self.videos.append(video.video_id)

        def pushed(self, urls: int) -> None:
            self.pushed_urls += urls

    seen = Seen()
    missing = f"{box.endpoints['origin']}/vod/no-such-video/master.m3u8"
    with Preheater(**arguments(box, tmp_path / "q.sqlite3")) as preheater:
        results = preheater.queue(
            [("good", box.video_url("demo-3")), {"video_id": "bad", "m3u8_url": missing}],
            observer=seen,
        )
        run = preheater.drain(observer=seen, **FAST)

    good, bad = results
    assert (good.video_id, bad.video_id) == ("good", "bad")
    assert good.error is None and good.queued > 0
    assert bad.error is not None and bad.queued == 0
    assert sorted(seen.videos) == ["bad", "good"]
    assert run.submitted == good.queued == seen.pushed_urls
    assert run.done == good.queued


def test_cancel_stops_the_pushes_of_a_queued_video(box: Sandbox, tmp_path: Path) -> None:
    with Preheater(**arguments(box, tmp_path / "c.sqlite3")) as preheater:
        (queued,) = preheater.queue([("to-cancel", box.video_url("demo-1"))])
        dropped = preheater.cancel("to-cancel")
        run = preheater.drain(**FAST)
        status = preheater.status("to-cancel")
        with pytest.raises(InputError):
            preheater.cancel("never-queued")

    assert dropped == queued.queued > 0
    assert run.submitted == 0
    assert status.videos[0].state is VideoState.CANCELLED
    assert status.total[UrlState.PENDING] == 0


def test_verify_purge_and_reset(box: Sandbox, tmp_path: Path) -> None:
    with Preheater(**arguments(box, tmp_path / "v.sqlite3")) as preheater:
        pushed = preheater.preheat("api-v", box.video_url("demo-2"), **FAST)
        checked = preheater.verify("api-v", sample=None, min_hit_ratio=0.5)
        purged = preheater.purge(video_id="api-v")
        forgotten = preheater.reset("api-v")
        with pytest.raises(InputError):
            preheater.status("api-v")

    assert checked.report.overall.total == pushed.video.found
    assert checked.passed and checked.hit_ratio is not None
    assert purged.submitted == pushed.video.found and purged.failed == 0
    assert forgotten >= pushed.video.found


def test_close_releases_the_provider_and_the_ledger(box: Sandbox, tmp_path: Path) -> None:
    preheater = Preheater(**arguments(box, tmp_path / "x.sqlite3"))
    closed: list[str] = []
    provider, ledger = preheater.provider, preheater.ledger
    original_provider_close, original_ledger_close = provider.close, ledger.close
    provider.close = lambda: (closed.append("provider"), original_provider_close())[1]  # type: ignore[method-assign]
    ledger.close = lambda: (closed.append("ledger"), original_ledger_close())[1]  # type: ignore[method-assign]

    preheater.close()
    preheater.close()  # twice is harmless

    assert closed == ["provider", "ledger"]
    with pytest.raises(InputError, match="closed"):
        preheater.status()


def test_the_sync_api_works_inside_a_running_event_loop(box: Sandbox, tmp_path: Path) -> None:
    async def inside() -> int:
        with Preheater(**arguments(box, tmp_path / "l.sqlite3")) as preheater:
            return len(preheater.expand(box.video_url("demo-1")).urls)

    assert asyncio.run(inside()) > 0


@pytest.mark.anyio
async def test_async_preheat_keeps_ledger_writes_off_the_loop(
    box: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop_thread = threading.get_ident()
    writers: set[int] = set()
    for name in ("put_video", "enqueue", "claim_with_quota", "record_outcomes"):
        original = getattr(SqliteLedger, name)

        def spy(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            writers.add(threading.get_ident())
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(SqliteLedger, name, spy)
    ticks = 0

    async def heartbeat() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    beating = asyncio.create_task(heartbeat())
    async with AsyncPreheater(**arguments(box, tmp_path / "a.sqlite3")) as preheater:
        result = await preheater.preheat("async-1", box.video_url("demo-3"), verify=True, **FAST)
        queued = await preheater.queue([("async-2", box.video_url("demo-1"))])
        drained = await preheater.drain(**FAST)
        status = await preheater.status()
        quota = await preheater.quota()
    beating.cancel()

    assert result.run is not None and result.run.done == result.video.found
    assert result.hit_ratio is not None
    assert queued[0].queued > 0 and drained.done == queued[0].queued
    assert {v.video_id: v.state for v in status.videos} == {
        "async-1": VideoState.DONE,
        "async-2": VideoState.DONE,
    }
    assert quota.available is not None
    assert writers and loop_thread not in writers
    assert ticks > 0  # the loop went on while the preheater worked


@pytest.mark.anyio
async def test_async_cancel_and_errors(box: Sandbox, tmp_path: Path) -> None:
    async with AsyncPreheater(**arguments(box, tmp_path / "e.sqlite3")) as preheater:
        (queued,) = await preheater.queue([("c", box.video_url("demo-2"))])
        assert await preheater.cancel("c") == queued.queued
        with pytest.raises(InputError):
            await preheater.verify("never-pushed")
        expansion = await preheater.expand(box.video_url("demo-2"))
    assert len(expansion.urls) == queued.found


def readme_python_blocks() -> list[str]:
    readme = Path(__file__).resolve().parents[1].joinpath("README.md").read_text()
    section = readme.split("## Use from Python", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


def test_the_readme_python_examples_run_as_written(
    box: Sandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Only the placeholders change: the sandbox's keys, endpoint, edge and videos."""
    env = box.client_env("tencent")
    blocks = readme_python_blocks()
    assert len(blocks) == 3
    monkeypatch.chdir(tmp_path)
    for block in blocks[:2]:
        code = (
            block.replace("YOUR_SECRET_ID", env["TENCENT_SECRET_ID"])
            .replace("YOUR_SECRET_KEY", env["TENCENT_SECRET_KEY"])
            .replace(
                'cdn_host="cdn.example.com",',
                f'cdn_host="{env["CDN_HOST"]}", endpoint="{env["TENCENT_ENDPOINT"]}",',
            )
        )
        code = re.sub(
            r"https://origin\.example\.com/ep(\d+)/master\.m3u8",
            lambda m: box.video_url(f"demo-{int(m[1]) % 3 + 1}"),
            code,
        )
        assert "example.com" not in code and "YOUR_" not in code
        exec(compile(code, "README.md", "exec"), {"__name__": "__main__"})  # noqa: S102
    out = capsys.readouterr().out
    assert re.search(r"ep-101: (\d+) of \1 URLs are in the CDN", out), out
    assert re.search(r"ep-102 \d+ URLs queued", out), out
    assert re.search(r"pushed \d+, 0 left for after the quota reset", out), out
    assert re.search(r"ep-103: \d+ URLs pushed, \d+% cached", out), out
    assert "('ep-103', 'done')" in out


def test_the_readme_targets_example_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The third block, on a sandbox of three accounts each owning a host of the edge."""
    from cdn_preheat.sandbox.server import TencentAccount

    block = readme_python_blocks()[2]
    names = ("tencent", "tencent-b", "qiniu")
    accounts = {"tencent-b": TencentAccount()}
    with Sandbox(
        videos=3, segments=4, task_delay=0.1, tencent_accounts=accounts, edge_per_account=True
    ) as tbox:
        env = tbox.targets_file(tmp_path / "targets.toml", names)
        for name, value in {**env, "CDN_PREHEAT_DB": str(tmp_path / "t.sqlite3")}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.chdir(tmp_path)
        code = re.sub(
            r"https://cdn\.example\.com/ep(\d+)/master\.m3u8",
            lambda m: tbox.edge_url(f"/vod/demo-{int(m[1]) % 3 + 1}/master.m3u8"),
            block,
        )
        code = re.sub(
            r"https://origin\.example\.com/ep(\d+)/master\.m3u8",
            lambda m: tbox.video_url(f"demo-{int(m[1]) % 3 + 1}"),
            code,
        )
        assert "example.com" not in code
        exec(compile(code, "README.md", "exec"), {"__name__": "__main__"})  # noqa: S102
        purged = tbox.tencent.quota_used("global", "url") + tbox.tencent.quota_used(
            "mainland", "url"
        )
    out = capsys.readouterr().out
    for name in names:
        assert re.search(rf"^{name} \d+ URLs pushed$", out, re.MULTILINE), out
        assert f"{name}: 100% cached at {tbox.hosts[name]}" in out, out
    assert "purged on tencent, tencent-b, qiniu" in out
    assert purged == 1  # the one URL, on tencent's own host
