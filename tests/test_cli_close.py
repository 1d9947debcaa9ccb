"""Every command closes what it opened: each provider and each ledger.

The commands run in this process (``cli.main``) against one sandbox, with the
factories wrapped so that every provider and ledger they hand out is counted
when it is made and when it is closed.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cdn_preheat import cli, ledger, providers
from cdn_preheat.sandbox.server import Sandbox


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    with Sandbox(videos=2, variants=2, segments=4, task_delay=0.05) as sandbox:
        yield sandbox


class Opened:
    def __init__(self) -> None:
        self.made: list[str] = []
        self.closed: list[str] = []

    def track(self, kind: str, thing: Any) -> Any:
        name = f"{kind}-{len(self.made)}"
        self.made.append(name)
        close = thing.close

        def closing() -> None:
            self.closed.append(name)
            close()

        thing.close = closing
        return thing


@pytest.fixture
def opened(box: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Opened]:
    for name in list(os.environ):
        if name.startswith(("TENCENT_", "QINIU_", "ALIYUN_", "CDN_", "MONGODB_", "EO_")):
            monkeypatch.delenv(name)
    for name, value in box.client_env("tencent").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CDN_PREHEAT_DB", str(tmp_path / "ledger.sqlite3"))
    monkeypatch.chdir(tmp_path)
    seen = Opened()
    make_provider, open_ledger = providers.make_provider, ledger.open_ledger
    monkeypatch.setattr(
        providers, "make_provider", lambda *a, **k: seen.track("provider", make_provider(*a, **k))
    )
    monkeypatch.setattr(
        ledger, "open_ledger", lambda *a, **k: seen.track("ledger", open_ledger(*a, **k))
    )
    yield seen


def run(*args: str) -> int:
    try:
        cli.main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_every_command_closes_its_provider_and_ledger(
    box: Sandbox, opened: Opened, tmp_path: Path
) -> None:
    url = box.video_url("demo-1")
    (tmp_path / "videos.csv").write_text(f"b-1,{box.video_url('demo-2')}\n")
    today = dt.date.today().isoformat()
    commands = [
        ("push", "v-1", url, "--json"),
        ("push", "v-1", url, "--dry-run", "--json"),
        ("push", "v-1", url, "--reset", "--purge", "--json"),
        ("batch", "videos.csv", "--json"),
        ("worker", "--once"),
        ("status", "--json"),
        ("quota", "--json"),
        ("verify", "v-1", "--json", "--min-hit-ratio", "0"),
        ("purge", "--video", "v-1", "--json"),
        ("stats", "--from", today, "--to", today, "--json"),
        ("health", "--json"),
    ]
    for command in commands:
        before = len(opened.made)
        assert run(*command) == 0, command
        assert len(opened.made) > before, f"{command[0]} opened nothing?"
        assert sorted(opened.closed) == sorted(opened.made), command
