"""Fetching and expanding through the CLI: deadlines, hostile origins, the ledger's timeouts."""

from __future__ import annotations

import socket

from conftest import Cli
from support import assert_all_done, expected_urls, write_catalog

from scripted_origin import Reply, ScriptedOrigin


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def slow_master(segments: int = 40) -> str:
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:4"]
    for n in range(segments):
        lines += ["#EXTINF:4.0,", f"slow-{n}.ts"]
    return "\n".join([*lines, "#EXT-X-ENDLIST", ""])


# deadlines -------------------------------------------------------------------


def test_batch_pushes_the_good_videos_when_one_origin_trickles(cli: Cli) -> None:
    with ScriptedOrigin() as origin:
        # One byte a second: no read ever times out, the body would take minutes.
        origin.script("/slow.m3u8", Reply(slow_master(), drip=1.0))
        slow = origin.url("/slow.m3u8")
        catalog = write_catalog(cli, ["demo-1", "demo-2"])
        with catalog.open("a") as handle:
            handle.write(f"slow,{slow}\n")
        run = cli("batch", str(catalog), "--json", extra_env={"CDN_PREHEAT_FETCH_DEADLINE": "2"})

    assert run.code == 1, run.stderr  # partial: one video failed, the others were pushed
    assert "Traceback" not in run.stderr
    videos = {video["video_id"]: video for video in run.json()["videos"]}
    assert videos["slow"]["error"] == (
        f"{slow}: timed out: no complete answer within the 2 s deadline"
        " (CDN_PREHEAT_FETCH_DEADLINE)"
    )
    assert videos["demo-1"]["error"] is None and videos["demo-2"]["error"] is None
    urls = expected_urls(cli, "demo-1", "demo-2")
    assert sorted(cli.sandbox.tencent.received_urls()) == sorted(urls)
    assert_all_done(cli, urls)


# MongoDB ---------------------------------------------------------------------


def test_health_with_mongodb_unreachable_fails_after_one_attempt(cli: Cli) -> None:
    uri = f"mongodb://preheat:Hunter2-Secret@127.0.0.1:{closed_port()}/cdn_preheat"
    run = cli("health", extra_env={"MONGODB_URI": uri}, timeout=60)

    assert run.code == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert "Hunter2-Secret" not in run.stderr + run.stdout
    message = " ".join(run.stderr.split())
    assert "is unreachable after 1 attempt (" in message
    assert "check MONGODB_URI" in message


def test_a_malformed_mongodb_uri_is_bad_configuration(cli: Cli) -> None:
    for uri in (
        "mongodb://preheat:p@ss-Hunter2@db.example.com/cdn_preheat",  # unescaped @
        "mongodb://preheat:Hunter2@db.example.com:99999/",  # port out of range
        "mongodb://preheat:Hunter2@db.example.com:27o17/",  # not a port
        "postgres://preheat:Hunter2@db.example.com/",  # not MongoDB
    ):
        run = cli("health", extra_env={"MONGODB_URI": uri}, timeout=60)

        assert run.code == 2, (uri, run.stderr)
        assert "Traceback" not in run.stderr
        assert "Hunter2" not in run.stderr + run.stdout
        assert run.stderr.startswith("error: MONGODB_URI is invalid: "), run.stderr
        assert run.stderr.count(".") >= 1 and len(run.stderr.strip().splitlines()) == 1
