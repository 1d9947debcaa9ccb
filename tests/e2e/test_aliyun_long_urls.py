"""Alibaba Cloud puts the prefetch list in the query string: long URLs must split.

The gateway's limit is not documented (see ``sandbox/aliyun.py``), so the run is
checked against two gateways: nginx's default 8 KiB request line, and a stricter
one that the provider's own bound does not anticipate.
"""

from __future__ import annotations

import dataclasses

import pytest
from clirun import Cli

SEGMENTS = 120
NAME = "s" * 300  # ~350-character URLs: 100 of them are ~40 KB percent-encoded


def long_video(cli: Cli) -> str:
    origin = cli.sandbox.origin
    lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:4"]
    for i in range(SEGMENTS):
        lines += ["#EXTINF:4,", f"{NAME}{i}.ts"]
        origin.add_file(f"/long/{NAME}{i}.ts", b"x", "video/mp2t")
    origin.add_file("/long/index.m3u8", ("\n".join([*lines, "#EXT-X-ENDLIST"]) + "\n").encode())
    return f"{cli.sandbox.endpoints['origin']}/long/index.m3u8"


@pytest.mark.parametrize("request_line", [8192, 2500])
def test_long_urls_are_all_pushed_whatever_the_gateway_limit(cli: Cli, request_line: int) -> None:
    api = cli.sandbox.aliyun
    api.limits = dataclasses.replace(api.limits, max_request_line=request_line)
    url = long_video(cli)
    run = cli("push", "long", url, "--json", extra_env={"CDN_PROVIDER": "aliyun"})
    assert run.code == 0, run.stderr
    assert sorted(set(api.received_urls())) == sorted(api.received_urls())
    assert len(api.received_urls()) == SEGMENTS + 1
    refused = api.counters.get("uri_too_large", 0)
    # The provider's own bound keeps every request under nginx's default line;
    # a stricter gateway answers 414 and the batch is split further.
    assert (refused == 0) if request_line == 8192 else (refused > 0)
