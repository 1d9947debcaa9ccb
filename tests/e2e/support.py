"""Helpers for the end-to-end tests that start, kill and signal CLI processes."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from clirun import Cli, base_env

from cdn_preheat.hls import ExpandedUrl, ExpandOptions, expand
from cdn_preheat.sandbox.server import Sandbox


def make_cli(sandbox: Sandbox, workdir: Path, **env: object) -> Cli:
    """A CLI runner on ``sandbox`` with extra ``CDN_PREHEAT_*``-style variables."""
    extra = {name: str(value) for name, value in env.items()}
    return Cli(sandbox, workdir, {**base_env(workdir), **sandbox.client_env("tencent"), **extra})


class Proc:
    """A CLI process running in the background; output goes to files in the workdir."""

    _count = 0

    def __init__(self, cli: Cli, *args: str, extra_env: Mapping[str, str] | None = None) -> None:
        Proc._count += 1
        self.out = cli.workdir / f"proc-{Proc._count}.out"
        self.err = cli.workdir / f"proc-{Proc._count}.err"
        with self.out.open("w") as out, self.err.open("w") as err:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "cdn_preheat", *args],
                cwd=cli.workdir,
                env={**cli.env, **(extra_env or {})},
                stdout=out,
                stderr=err,
                text=True,
            )

    def poll(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float = 120) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise AssertionError(f"process did not end in {timeout} s: {self.stderr}") from None

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def kill(self) -> None:
        self.popen.kill()
        self.popen.wait()

    @property
    def stdout(self) -> str:
        return self.out.read_text()

    @property
    def stderr(self) -> str:
        return self.err.read_text()


def wait_until(condition: Callable[[], bool], timeout: float = 60, interval: float = 0.005) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def expansion(cli: Cli, video_id: str) -> list[ExpandedUrl]:
    """What the CLI will push for a video (expanded in this process to save a start-up)."""
    options = ExpandOptions(cdn_host=cli.sandbox.edge.netloc)
    return list(expand(cli.sandbox.video_url(video_id), options).urls)


def expected_urls(cli: Cli, *video_ids: str) -> list[str]:
    return [item.url for video_id in video_ids for item in expansion(cli, video_id)]


def write_catalog(cli: Cli, video_ids: Iterable[str], name: str = "videos.csv") -> Path:
    path = cli.workdir / name
    lines = ["video_id,m3u8_url"] + [f"{v},{cli.sandbox.video_url(v)}" for v in video_ids]
    path.write_text("\n".join(lines) + "\n")
    return path


def duplicates(urls: Iterable[str]) -> dict[str, int]:
    """URLs received more than once, with their counts."""
    return {url: n for url, n in Counter(urls).items() if n > 1}


def assert_all_done(cli: Cli, urls: list[str]) -> None:
    """The ledger holds every URL as done and nothing in any other state."""
    total = cli.status()["total"]
    assert total["done"] == len(set(urls)), total
    for state in ("pending", "reserved", "submitted", "failed", "invalid"):
        assert total[state] == 0, total
    quota = cli("quota", "--json")
    assert quota.code == 0, quota.stderr
    assert quota.json()["reserved_in_flight"] == 0, quota.json()
