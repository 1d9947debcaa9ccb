"""Tencent refusals of real accounts through the whole push (sources in sandbox/tencent.py)."""

from __future__ import annotations

from clirun import Cli


def test_one_url_too_long_for_tencent_is_invalid_and_the_rest_is_pushed(cli: Cli) -> None:
    sandbox = cli.sandbox
    sandbox.tencent.limits.max_url_length = 200
    origin = sandbox.origin
    names = ["a.ts", "b.ts", f"c.ts?token={'x' * 300}", "d.ts"]
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:4"]
    for name in names:
        lines += ["#EXTINF:4,", name]
        origin.add_file(f"/long/{name.split('?')[0]}", b"x", "video/mp2t")
    origin.add_file("/long/index.m3u8", ("\n".join([*lines, "#EXT-X-ENDLIST"]) + "\n").encode())
    run = cli("push", "long", f"{sandbox.endpoints['origin']}/long/index.m3u8", "--json")
    assert "Traceback" not in run.stderr
    (video,) = cli.status("long")["videos"]
    assert (video["invalid"], video["done"]) == (1, 4), run.stderr
    received = sandbox.tencent.received_urls()
    assert len(received) == 4 and not any("token=" in url for url in received)
