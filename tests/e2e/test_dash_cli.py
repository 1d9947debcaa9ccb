"""DASH through the front door: `expand`, `push` and `batch` on the sandbox's MPDs."""

from __future__ import annotations

import json

import pytest
from clirun import Cli

from cdn_preheat.sandbox.origin import DASH_MODES, dash_mode


def catalog(cli: Cli, video_id: str) -> list[str]:
    return [cli.sandbox.edge_url(p) for p in cli.sandbox.origin.dash_catalog_paths(video_id)]


@pytest.mark.parametrize("number", range(1, len(DASH_MODES) + 1), ids=dash_mode)
def test_expand_prints_every_url_of_the_mpd(cli: Cli, number: int) -> None:
    cli.sandbox.origin.videos = max(cli.sandbox.origin.videos, number)
    video_id = f"demo-{number}"
    run = cli("expand", cli.sandbox.dash_url(video_id))
    assert run.code == 0, run.stderr
    assert run.stdout.split() == catalog(cli, video_id)
    assert run.stdout.split()[0].endswith("/manifest.mpd")


def test_expand_json_names_kinds_and_representations(cli: Cli) -> None:
    run = cli("expand", cli.sandbox.dash_url("demo-1"), "--json")
    assert run.code == 0, run.stderr
    data = run.json()
    assert data["live"] is False
    kinds = [u["kind"] for u in data["urls"]]
    assert kinds[0] == "playlist" and {"init", "segment"} <= set(kinds)
    assert any(u["rendition"].endswith("#p0/video/v0") for u in data["urls"])


def test_a_live_mpd_is_noted_and_a_bomb_is_one_sentence_exit_2(cli: Cli) -> None:
    origin = cli.sandbox.origin
    live = (
        '<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic"'
        ' availabilityStartTime="2026-01-01T00:00:00Z"><Period start="PT0S"><AdaptationSet>'
        '<Representation id="v" bandwidth="1"><SegmentTemplate media="$Time$.m4s">'
        '<SegmentTimeline><S t="10" d="2" r="1"/></SegmentTimeline></SegmentTemplate>'
        "</Representation></AdaptationSet></Period></MPD>"
    )
    origin.add_file("/live/manifest.mpd", live, "application/dash+xml")
    run = cli("expand", f"{cli.sandbox.endpoints['origin']}/live/manifest.mpd")
    assert run.code == 0, run.stderr
    assert [u.rsplit("/", 1)[1] for u in run.stdout.split()] == ["manifest.mpd", "10.m4s", "12.m4s"]
    assert "dynamic MPD" in run.stderr

    bomb = (
        '<?xml version="1.0"?><!DOCTYPE MPD [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
        "<MPD>&b;</MPD>"
    )
    origin.add_file("/bomb/manifest.mpd", bomb, "application/dash+xml")
    run = cli("expand", f"{cli.sandbox.endpoints['origin']}/bomb/manifest.mpd")
    assert run.code == 2
    assert "refused" in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_push_and_batch_preheat_dash_videos_end_to_end(cli: Cli) -> None:
    urls = catalog(cli, "demo-2")
    run = cli("push", "dash-2", cli.sandbox.dash_url("demo-2"), "--json")
    assert run.code == 0, run.stderr
    summary = run.json()
    assert summary["found"] == summary["pushed"] == summary["done"] == len(urls)
    assert sorted(cli.sandbox.tencent.received_urls()) == sorted(urls)
    assert all(url in cli.sandbox.cache for url in urls)
    verified = cli("verify", "dash-2", "--json")
    assert verified.code == 0, verified.stderr
    assert verified.json()["overall"]["ratio"] == 1.0
    assert any("/dash/v0/" in rendition for rendition in verified.json()["renditions"])

    # batch mixes HLS and DASH in one file; the MPD's URLs were pushed already.
    lines = [
        json.dumps({"video_id": "dash-3", "m3u8_url": cli.sandbox.dash_url("demo-3")}),
        f"hls-3,{cli.sandbox.video_url('demo-3')}",
    ]
    source = cli.workdir / "videos.txt"
    source.write_text("\n".join(lines) + "\n")
    run = cli("batch", str(source), "--json")
    assert run.code == 0, run.stderr
    received = cli.sandbox.tencent.received_urls()
    assert set(catalog(cli, "demo-3")) <= set(received)
    assert len(received) == len(set(received))  # nothing pushed twice


def test_demo_preheats_a_dash_video_too(cli: Cli) -> None:
    run = cli("demo", "--videos", "1")  # the demo starts its own sandbox
    assert run.code == 0, run.stderr
    assert "demo-1-dash" in run.stderr
    row = next(line for line in run.stderr.splitlines() if "demo-1-dash" in line)
    assert "done" in row.lower()
