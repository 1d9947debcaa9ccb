"""Fetching and expanding through the CLI: deadlines, hostile origins, the ledger's timeouts."""

from __future__ import annotations

import socket

from clirun import Cli
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


# playlists as players read them ------------------------------------------------

MASTER = (
    "#EXTM3U\n#EXT-X-VERSION:x\n#EXT-X-STREAM-INF:BANDWIDTH=1\nok/index.m3u8\n"
    "#EXT-X-STREAM-INF:BANDWIDTH=2\ngone/index.m3u8\n"
)
MEDIA = "#EXTM3U\n#EXT-X-TARGETDURATION:6.006\n#EXTINF:4,\ns0.ts\ns1.ts\n#EXT-X-ENDLIST\n"


def scripted_video(origin: ScriptedOrigin) -> None:
    origin.playlist("/v/master.m3u8", MASTER)
    origin.playlist("/v/ok/index.m3u8", MEDIA)


def test_push_skips_a_missing_variant_queues_the_others_and_exits_1(cli: Cli) -> None:
    edge = cli.sandbox.edge.netloc
    with ScriptedOrigin() as origin:
        scripted_video(origin)
        run = cli("push", "v1", origin.url("/v/master.m3u8"))
        gone = origin.url("/v/gone/index.m3u8")

    assert run.code == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert f"error: v1: partial: rendition skipped: {gone}: HTTP 404 Not Found" in run.stderr
    assert "warning: v1: " in run.stderr and "EXT-X-TARGETDURATION value '6.006'" in run.stderr
    expected = [
        f"http://{edge}/v/master.m3u8",
        f"http://{edge}/v/ok/index.m3u8",
        f"http://{edge}/v/ok/s0.ts",
        f"http://{edge}/v/ok/s1.ts",  # no #EXTINF before it: players request it all the same
    ]
    # (The sandbox edge cannot fetch them: Tencent says invalid, and each is pushed once more.)
    assert set(cli.sandbox.tencent.received_urls()) == set(expected)
    total = cli.status("v1")["total"]
    assert total["skipped"] == 1 and total["pending"] == total["reserved"] == 0


def test_strict_fails_the_video_as_before_and_pushes_nothing(cli: Cli) -> None:
    with ScriptedOrigin() as origin:
        scripted_video(origin)
        run = cli("push", "v1", origin.url("/v/master.m3u8"), "--strict")
        expand = cli("expand", origin.url("/v/master.m3u8"), "--strict")
        lenient = cli("expand", origin.url("/v/master.m3u8"), "--json")

    assert run.code == 2, run.stderr
    assert "malformed playlist: line 2: EXT-X-VERSION value 'x' is not valid" in run.stderr
    assert cli.sandbox.tencent.received_urls() == []
    assert expand.code == 2 and expand.stdout == ""
    assert lenient.code == 1, lenient.stderr
    report = lenient.json()
    assert len(report["urls"]) == 4 and len(report["failed_playlists"]) == 1
    assert "partial: 1 playlist(s) could not be read" in lenient.stderr


def test_batch_with_a_partial_video_queues_it_and_the_others_and_exits_1(cli: Cli) -> None:
    with ScriptedOrigin() as origin:
        scripted_video(origin)
        catalog = write_catalog(cli, ["demo-1"])
        with catalog.open("a") as handle:
            handle.write(f"v1,{origin.url('/v/master.m3u8')}\n")
        run = cli("batch", str(catalog), "--json")

    assert run.code == 1, run.stderr
    videos = {video["video_id"]: video for video in run.json()["videos"]}
    assert videos["v1"]["error"] is None and len(videos["v1"]["failed_playlists"]) == 1
    assert videos["v1"]["queued"] == 4
    assert videos["demo-1"]["failed_playlists"] == []
    pushed = set(cli.sandbox.tencent.received_urls())
    assert set(expected_urls(cli, "demo-1")) <= pushed
    assert len(pushed) == 4 + videos["demo-1"]["found"]


def test_stderr_is_not_wrapped_when_it_is_not_a_terminal(cli: Cli) -> None:
    long_url = f"http://127.0.0.1:{closed_port()}/{'very-long-path-segment/' * 8}master.m3u8"
    env = {name: value for name, value in cli.env.items() if name != "COLUMNS"}
    run = Cli(cli.sandbox, cli.workdir, env)("expand", long_url)

    assert run.code == 2, run.stderr
    [line] = run.stderr.strip().splitlines()
    assert line.startswith(f"error: {long_url}: connection failed")
    assert len(line) > 150
