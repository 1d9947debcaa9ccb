"""Pure pieces of the pipeline: head-first priorities and argument forms."""

import pytest

from cdn_preheat.cli import _legacy_form
from cdn_preheat.errors import InputError
from cdn_preheat.hls import ExpandedUrl, Expansion, UrlKind
from cdn_preheat.pipeline import (
    PRIORITY_HEAD,
    PRIORITY_START,
    PRIORITY_TAIL,
    HeadFirst,
    prioritize,
)


def _expansion() -> Expansion:
    master = "http://cdn/v/master.m3u8"
    urls = [ExpandedUrl(master, UrlKind.PLAYLIST, master, -1, None)]
    for rendition in ("a", "b"):
        playlist = f"http://cdn/v/{rendition}.m3u8"
        urls.append(ExpandedUrl(playlist, UrlKind.PLAYLIST, playlist, -1, None))
        init = f"http://cdn/v/{rendition}/init.mp4"
        urls.append(ExpandedUrl(init, UrlKind.INIT, playlist, -1, None))
        urls += [
            ExpandedUrl(f"http://cdn/v/{rendition}/{i}.m4s", UrlKind.SEGMENT, playlist, i, 4.0)
            for i in range(5)
        ]
    return Expansion(source=master, urls=urls, skipped=[], live_playlists=[])


def test_head_first_by_segments_puts_every_rendition_start_before_any_tail() -> None:
    queued = prioritize(_expansion(), HeadFirst(2))
    by_url = {q.url: q.priority for q in queued}
    assert by_url["http://cdn/v/master.m3u8"] == PRIORITY_START
    assert by_url["http://cdn/v/b/init.mp4"] == PRIORITY_START
    assert by_url["http://cdn/v/a/1.m4s"] == PRIORITY_HEAD
    assert by_url["http://cdn/v/b/1.m4s"] == PRIORITY_HEAD
    assert by_url["http://cdn/v/a/2.m4s"] == PRIORITY_TAIL


def test_head_first_by_seconds_uses_segment_durations() -> None:
    by_url = {q.url: q.priority for q in prioritize(_expansion(), HeadFirst(10, "seconds"))}
    # Segments start at 0, 4, 8, 12 s: the first three start within 10 s.
    assert [by_url[f"http://cdn/v/a/{i}.m4s"] for i in range(5)] == [
        PRIORITY_HEAD,
        PRIORITY_HEAD,
        PRIORITY_HEAD,
        PRIORITY_TAIL,
        PRIORITY_TAIL,
    ]


def test_fifo_keeps_one_tier() -> None:
    assert {q.priority for q in prioritize(_expansion(), None)} == {PRIORITY_START}


@pytest.mark.parametrize(
    ("text", "expected"),
    [("10", HeadFirst(10)), ("60s", HeadFirst(60, "seconds")), ("fifo", None), ("0", None)],
)
def test_head_first_parse(text: str, expected: HeadFirst | None) -> None:
    assert HeadFirst.parse(text) == expected


def test_head_first_parse_rejects_garbage() -> None:
    with pytest.raises(InputError, match="--head-first"):
        HeadFirst.parse("ten")


def test_old_usage_maps_to_push() -> None:
    assert _legacy_form(["vid1", "http://o/m.m3u8", "--reset"]) == [
        "push",
        "vid1",
        "http://o/m.m3u8",
        "--reset",
    ]
    assert _legacy_form(["push", "vid1", "http://o/m.m3u8"]) == ["push", "vid1", "http://o/m.m3u8"]
    assert _legacy_form(["--debug", "status"]) == ["--debug", "status"]


def test_a_run_report_sums_its_drains() -> None:
    from cdn_preheat.errors import QuotaExhausted
    from cdn_preheat.pipeline import RunReport
    from cdn_preheat.scheduler import DrainReport

    run = RunReport(done=4)
    run.add(DrainReport(submitted=10, invalid=1, requests=3, rate_limited=1, transient=2))
    stop = QuotaExhausted("spent")
    run.add(DrainReport(submitted=5, requests=1, quota_exhausted=True, stopped_by=stop))

    assert (run.submitted, run.invalid, run.requests) == (15, 1, 4)
    assert run.wasted_requests == 3
    assert run.quota_exhausted and run.stopped_by is stop
    assert run.done == 4  # tracking counters are the run's own
