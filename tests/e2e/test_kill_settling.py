"""A process SIGKILLed as it gives back or refuses a batch leaks none of the day's quota.

A batch is claimed with a share of the day's quota reserved (``inflight`` in
the quota book). When the CDN refuses it, or the run gives it back, the URLs
leave ``reserved`` and their share leaves ``inflight`` in one ledger step
(``Ledger.settle_claim``). Here the pushing process kills itself (SIGKILL: no
cleanup) at the exact moment between the two (the URLs released or marked
invalid, their share not yet settled), through a hook on the SQLite ledger's
steps. The next run must then see the whole quota: with a daily quota of
exactly one video's URLs, it pushes every one of them and exits 0, and the
book holds nothing in flight.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from support import Proc, expected_urls, make_cli

from cdn_preheat.sandbox.server import Sandbox

BATCH = 4
LEASE = 1.0

# Imported by the pushing process at start-up (a sitecustomize on its PYTHONPATH):
# once the ledger has ended URLs of a claim with ``SETTLE_KILL_AFTER`` (released,
# or marked invalid), the process dies as it is about to settle their quota share.
HOOK = """\
import os
import signal

from cdn_preheat.ledger import sqlite as _ledger

_ended = []
_step = getattr(_ledger, os.environ["SETTLE_KILL_AFTER"])
_settle = _ledger._settle_quota


def _ending(*args, **kwargs):
    _step(*args, **kwargs)
    _ended.append(True)


def _settling(*args, **kwargs):
    if _ended:
        os.kill(os.getpid(), signal.SIGKILL)
    return _settle(*args, **kwargs)


setattr(_ledger, os.environ["SETTLE_KILL_AFTER"], _ending)
_ledger._settle_quota = _settling
"""


def _hooked(tmp_path: Path, step: str, cdn_host: str) -> dict[str, str]:
    shim = tmp_path / "kill-hook"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(HOOK)
    return {"PYTHONPATH": str(shim), "SETTLE_KILL_AFTER": step, "CDN_HOST": cdn_host}


@pytest.mark.parametrize(
    ("step", "cdn_host"),
    [
        # CDN_HOST is no domain of the account: the CDN refuses it, so the batch
        # goes back to the queue (Scheduler._abandon) and the run stops.
        ("_release", "cdn.not-the-account.example.com"),
        # No CDN_HOST: the URLs keep the origin's host, which the CDN refuses
        # per URL; they are marked invalid (Scheduler._split).
        ("_mark_invalid", ""),
    ],
    ids=["released", "refused"],
)
def test_a_kill_as_a_batch_is_given_back_leaks_no_quota(
    tmp_path: Path, step: str, cdn_host: str
) -> None:
    with Sandbox(videos=2, segments=12, task_delay=0.1) as box:
        cli = make_cli(
            box,
            tmp_path,
            CDN_PREHEAT_BATCH_SIZE=BATCH,
            CDN_PREHEAT_LEASE_SECONDS=LEASE,
            CDN_PREHEAT_CONCURRENCY=1,
        )
        urls = expected_urls(cli, "demo-2")
        # The day's quota is exactly the second video: a share leaked by the first
        # run would leave too little for it, and the run would end with exit 3.
        box.tencent.limits.push_per_day = len(urls)

        dying = Proc(
            cli,
            "push",
            "demo-1",
            box.video_url("demo-1"),
            extra_env=_hooked(tmp_path, step, cdn_host),
        )
        code = dying.wait()
        assert code == -signal.SIGKILL, f"not killed by its hook (exit {code}): {dying.stderr}"
        assert box.tencent.received() == []
        # Killed in the middle of one ledger step: the step never happened.
        status = cli.status("demo-1")
        assert status["total"]["reserved"] == BATCH, status
        assert status["total"]["invalid"] == 0, status

        # Past the dead run's lease, the next run recovers its batch first.
        time.sleep(LEASE + 0.2)
        # --no-wait: the dead run still holds the turn to poll the task list.
        final = cli("push", "demo-2", box.video_url("demo-2"), "--no-wait", "--json")
        assert final.code == 0, final.stderr
        assert sorted(box.tencent.received_urls()) == sorted(urls)

        quota = cli("quota", "--json")
        assert quota.code == 0, quota.stderr
        assert quota.json()["reserved_in_flight"] == 0, quota.json()
        assert quota.json()["available"] == 0, quota.json()  # spent on demo-2, all of it
        assert cli.status("demo-1")["total"]["reserved"] == 0
