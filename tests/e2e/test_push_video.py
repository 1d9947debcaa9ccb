"""`push VIDEO` pushes that video's URLs only; `--all` drains every queued video
(issue 10, item 11)."""

from __future__ import annotations

from clirun import Cli
from support import expected_urls, write_catalog


def _queue_only(cli: Cli, video_id: str) -> None:
    queued = cli("batch", str(write_catalog(cli, [video_id])), "--queue-only")
    assert queued.code == 0, queued.stderr
    assert cli.status(video_id)["videos"][0]["pending"] > 0


def test_push_of_a_video_leaves_other_queued_videos_pending(cli: Cli) -> None:
    _queue_only(cli, "demo-1")
    others = expected_urls(cli, "demo-1")
    mine = expected_urls(cli, "demo-2")

    run = cli("push", "demo-2", cli.sandbox.video_url("demo-2"), "--json")

    assert run.code == 0, run.stderr
    received = cli.sandbox.tencent.received_urls()
    assert sorted(received) == sorted(mine)
    assert not set(received) & set(others)
    summary = run.json()
    assert (summary["pushed"], summary["done"], summary["pending"]) == (len(mine), len(mine), 0)
    left = cli.status("demo-1")["videos"][0]
    assert (left["state"], left["pending"]) == ("queued", len(others))
    assert cli.status("demo-2")["videos"][0]["state"] == "done"


def test_push_all_also_drains_the_other_queued_videos(cli: Cli) -> None:
    _queue_only(cli, "demo-1")
    others = expected_urls(cli, "demo-1")
    mine = expected_urls(cli, "demo-2")

    run = cli("push", "demo-2", cli.sandbox.video_url("demo-2"), "--all")

    assert run.code == 0, run.stderr
    assert sorted(cli.sandbox.tencent.received_urls()) == sorted(mine + others)
    assert cli.status()["total"]["pending"] == 0
    assert cli.status("demo-1")["videos"][0]["state"] in {"submitted", "done"}


def test_push_of_a_video_ends_when_its_own_urls_are_pushed_while_others_wait(
    cli: Cli,
) -> None:
    """Other videos' pending URLs do not keep the push going, nor make it exit 3."""
    _queue_only(cli, "demo-1")
    _queue_only(cli, "demo-3")

    run = cli("push", "demo-2", cli.sandbox.video_url("demo-2"))

    assert run.code == 0, run.stderr
    total = cli.status()["total"]
    assert total["pending"] == len(expected_urls(cli, "demo-1", "demo-3"))
