"""Task results match their ledger rows whether the vendor echoes or normalises URLs.

Neither Tencent (CDN or EdgeOne) nor Alibaba documents whether its task list answers a URL as
submitted; Alibaba documents ObjectPath as "加速域名/文件" (domain/file, no
scheme). The emulators answer in either mode (``url_echo``), and the product
must close the right rows in both: a result it cannot match leaves its task
open, polled until the tracker gives up.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from cdn_preheat.app import expand_options
from cdn_preheat.config import Settings
from cdn_preheat.hls import expand
from cdn_preheat.ledger.base import UrlState
from cdn_preheat.ledger.sqlite import SqliteLedger
from cdn_preheat.pipeline import DEFAULT_HEAD_FIRST, RunOptions, queue_expansion, run_queue
from cdn_preheat.providers import make_provider
from cdn_preheat.sandbox.server import Sandbox
from cdn_preheat.tracker import TrackerOptions

# Lower-case percent-encodings: a normalising answer upper-cases them, or decodes
# the unreserved ones ("%2d" is "-").
FILES = ["seg%2d1.ts", "%e4%b8%ad.ts", "plain.ts"]
PLAYLIST = (
    "#EXTM3U\n#EXT-X-TARGETDURATION:4\n"
    + "".join(f"#EXTINF:4,\n{name}\n" for name in FILES)
    + "#EXT-X-ENDLIST\n"
)


def _sandbox(kind: str, echo: str) -> Sandbox:
    box = Sandbox(videos=0, task_delay=0.1)
    if kind == "tencent":
        box.tencent.limits.url_echo = echo  # type: ignore[assignment]
    elif kind == "edgeone":
        box.edgeone.limits.url_echo = echo  # type: ignore[assignment]
    else:
        box.aliyun.limits = dataclasses.replace(box.aliyun.limits, url_echo=echo)
    box.origin.add_file("/norm/index.m3u8", PLAYLIST)
    for name in FILES:
        box.origin.add_file(f"/norm/{name}", b"x", "video/mp2t")
    return box


@pytest.mark.parametrize("echo", ["echo", "normalise"])
@pytest.mark.parametrize("kind", ["tencent", "edgeone", "aliyun"])
def test_results_close_the_rows_they_belong_to(tmp_path: Path, kind: str, echo: str) -> None:
    with _sandbox(kind, echo) as box:
        env = {k.lower(): v for k, v in box.client_env(kind).items()}
        settings = Settings(_env_file=None, **env)  # type: ignore[arg-type]
        provider = make_provider(settings)
        ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
        expansion = expand(f"{box.endpoints['origin']}/norm/index.m3u8", expand_options(settings))
        urls = [item.url for item in expansion.urls]
        assert any("%2d" in url for url in urls)  # submitted exactly as the playlist says
        queue_expansion(
            ledger, kind, provider.area, "norm", expansion,
            head_first=DEFAULT_HEAD_FIRST, max_age=dt.timedelta(days=1),
        )  # fmt: skip

        options = RunOptions(tracker=TrackerOptions(poll_interval=0.05, timeout=10))
        report = run_queue(ledger, provider, options)

        assert not report.tracking_timed_out
        assert ledger.counts() == {UrlState.DONE: len(urls)}
        assert ledger.open_tasks(kind, provider.area) == []
        received = box.apis[kind].received_urls()  # type: ignore[attr-defined]
        assert sorted(received) == sorted(urls)
        # Crash recovery matches them too, under the submitted spelling.
        since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        assert set(provider.find_submitted(urls, since)) == set(urls)
        # And the lookup of a lost request's (Alibaba: URLs by ObjectPath, then their ids).
        assert set(provider.find_request(urls, since)) == set(urls)
        ledger.close()
