"""MPEG-DASH expansion: the rules of ISO/IEC 23009-1, each on a small MPD.

The MPDs follow the shapes of the standard's examples and of the DASH-IF
test vectors (live-profile SegmentTemplate with $Number$ or $Time$, on-demand
SegmentBase, multi-period, thumbnails, subtitles); the expected URLs are
worked out from the standard's text, not copied from any player's output.
Clause numbers are the 5th edition's (2022).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdn_preheat.dash import expand_mpd, looks_like_mpd
from cdn_preheat.errors import PlaylistError
from cdn_preheat.hls import ExpandOptions, Expansion, UrlKind, UrlLimitExceeded, expand
from cdn_preheat.pipeline import PRIORITY_HEAD, PRIORITY_TAIL, HeadFirst, prioritize
from cdn_preheat.urlresolve import HostMap
from scripted_origin import ScriptedOrigin

MPD_URL = "http://origin.example.com/vod/title/manifest.mpd"
DIR = "http://origin.example.com/vod/title/"
FAST = ExpandOptions(retry_backoff=0.01, timeout=5.0)
DASH = "application/dash+xml"


def mpd(body: str, *, attrs: str = 'type="static" mediaPresentationDuration="PT10S"') -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" {attrs}'
        ' profiles="urn:mpeg:dash:profile:isoff-live:2011">\n'
        f"{body}\n</MPD>\n"
    )


def one_rep(segment_info: str, rep: str = 'id="v1" bandwidth="500000"', period: str = "") -> str:
    return mpd(
        f'<Period {period}><AdaptationSet contentType="video">'
        f"<Representation {rep}>{segment_info}</Representation>"
        "</AdaptationSet></Period>"
    )


class Result:
    def __init__(
        self,
        text: str,
        *,
        cdn_host: str | None = None,
        max_urls: int = 200_000,
        all_base_urls: bool = False,
    ) -> None:
        self.skipped: dict[str, str] = {}
        hosts = HostMap("origin.example.com", cdn_host)
        expansion = expand_mpd(
            text, MPD_URL, MPD_URL, MPD_URL, hosts, self.skipped.setdefault, max_urls,
            all_base_urls=all_base_urls,
        )  # fmt: skip
        self.items = expansion.urls
        self.is_live = expansion.is_live

    @property
    def urls(self) -> list[str]:
        return [item.url for item in self.items]

    @property
    def names(self) -> list[str]:
        """URLs relative to the MPD's directory."""
        return [url.removeprefix(DIR) for url in self.urls]


def names(text: str) -> list[str]:
    return Result(text).names


def error(text: str, **options: object) -> str:
    with pytest.raises(PlaylistError) as caught:
        Result(text, **options)  # type: ignore[arg-type]
    message = str(caught.value)
    assert MPD_URL in message
    return message


# --------------------------------------------------------------------------- SegmentTemplate


def test_template_duration_count_is_the_ceiling_of_period_over_duration() -> None:
    # 5.3.9.5.3: the segment count is ceil(Period duration x timescale / @duration).
    text = mpd(
        '<Period><AdaptationSet><Representation id="v1" bandwidth="1">'
        '<SegmentTemplate timescale="1000" duration="2000"'
        ' initialization="$RepresentationID$/i.mp4" media="$RepresentationID$/$Number$.m4s"/>'
        "</Representation></AdaptationSet></Period>",
        attrs='type="static" mediaPresentationDuration="PT9.5S"',
    )
    result = Result(text)
    assert result.names == ["v1/i.mp4", "v1/1.m4s", "v1/2.m4s", "v1/3.m4s", "v1/4.m4s", "v1/5.m4s"]
    assert [item.kind for item in result.items[:2]] == [UrlKind.INIT, UrlKind.SEGMENT]
    assert [item.index for item in result.items] == [-1, 0, 1, 2, 3, 4]
    assert {item.duration for item in result.items[1:]} == {2.0}
    assert all(url.startswith("http://") for url in result.urls)


def test_start_number_width_formats_bandwidth_and_dollar_escapes() -> None:
    info = (
        '<SegmentTemplate timescale="10" duration="50" startNumber="7"'
        ' media="$Bandwidth$/$$x$$-$Number%05d$-$Number%03x$.m4s"'
        ' initialization="init-$Bandwidth%09d$.mp4"/>'
    )
    result = names(one_rep(info))  # 10 s / 5 s: two segments, numbered from 7
    assert result == [
        "init-000500000.mp4",
        "500000/$x$-00007-007.m4s",
        "500000/$x$-00008-008.m4s",
    ]


def test_start_number_defaults_to_one_and_zero_is_kept() -> None:
    media = '<SegmentTemplate duration="5" media="s$Number$.m4s"{}/>'
    assert names(one_rep(media.format(""))) == ["s1.m4s", "s2.m4s"]
    assert names(one_rep(media.format(' startNumber="0"'))) == ["s0.m4s", "s1.m4s"]


def test_end_number_ends_the_list_before_the_period_does() -> None:
    info = '<SegmentTemplate duration="1" startNumber="3" endNumber="5" media="s$Number$.m4s"/>'
    assert names(one_rep(info)) == ["s3.m4s", "s4.m4s", "s5.m4s"]


def test_time_with_duration_counts_from_the_presentation_time_offset() -> None:
    info = (
        '<SegmentTemplate timescale="90000" duration="450000" presentationTimeOffset="900000"'
        ' media="t$Time$.m4s"/>'
    )
    assert names(one_rep(info)) == ["t900000.m4s", "t1350000.m4s"]


def test_template_without_duration_or_timeline_is_one_segment() -> None:
    assert names(one_rep('<SegmentTemplate media="whole-$Number$.mp4"/>')) == ["whole-1.mp4"]


# --------------------------------------------------------------------------- SegmentTimeline


def timeline(entries: str, extra: str = "", media: str = "t$Time$-n$Number$.m4s") -> str:
    return (
        f'<SegmentTemplate timescale="1000" media="{media}" {extra}>'
        f"<SegmentTimeline>{entries}</SegmentTimeline></SegmentTemplate>"
    )


def test_timeline_t_d_and_r_give_times_and_numbers() -> None:
    info = timeline('<S t="0" d="2000" r="2"/><S d="1000"/>')
    assert names(one_rep(info)) == [
        "t0-n1.m4s",
        "t2000-n2.m4s",
        "t4000-n3.m4s",
        "t6000-n4.m4s",
    ]


def test_first_s_without_t_starts_at_zero_and_a_later_t_jumps() -> None:
    info = timeline('<S d="1000"/><S t="5000" d="1000"/>', media="t$Time$.m4s")
    assert names(one_rep(info)) == ["t0.m4s", "t5000.m4s"]


def test_negative_repeat_runs_to_the_next_s_t() -> None:
    # 5.3.9.6: r=-1 repeats until the start of the next S element.
    info = timeline('<S t="0" d="3000" r="-1"/><S t="7000" d="1000"/>', media="t$Time$.m4s")
    assert names(one_rep(info)) == ["t0.m4s", "t3000.m4s", "t6000.m4s", "t7000.m4s"]


def test_negative_repeat_runs_to_the_end_of_the_period() -> None:
    # The Period lasts 10 s; with timescale 1000 and d=3000: ceil(10000 / 3000) = 4 segments.
    info = timeline('<S t="0" d="3000" r="-1"/>', media="t$Time$.m4s")
    assert names(one_rep(info)) == ["t0.m4s", "t3000.m4s", "t6000.m4s", "t9000.m4s"]


def test_negative_repeat_ends_at_the_offset_plus_the_period_duration() -> None:
    info = timeline(
        '<S t="900000" d="450000" r="-1"/>',
        extra='timescale="90000" presentationTimeOffset="900000"',
        media="t$Time$.m4s",
    ).replace('timescale="1000" ', "")
    assert names(one_rep(info)) == ["t900000.m4s", "t1350000.m4s"]


def test_s_n_sets_the_number_of_its_first_segment() -> None:
    info = timeline('<S t="0" d="1000" r="1"/><S n="10" d="1000" r="1"/>', media="n$Number$.m4s")
    assert names(one_rep(info)) == ["n1.m4s", "n2.m4s", "n10.m4s", "n11.m4s"]


def test_timeline_with_start_and_end_number() -> None:
    info = timeline('<S d="1000" r="9"/>', extra='startNumber="5" endNumber="7"', media="$Number$")
    assert names(one_rep(info)) == ["5", "6", "7"]


def test_timeline_durations_are_seconds_for_head_first() -> None:
    result = Result(one_rep(timeline('<S d="1500" r="1"/><S d="500"/>')))
    assert [item.duration for item in result.items] == [1.5, 1.5, 0.5]


# ---------------------------------------------------------------- SegmentList, SegmentBase


def test_segment_list_media_and_initialization() -> None:
    info = (
        '<SegmentList timescale="1000" duration="4000">'
        '<Initialization sourceURL="init.mp4"/>'
        '<SegmentURL media="a.m4s"/><SegmentURL media="b.m4s"/><SegmentURL media="c.m4s"/>'
        "</SegmentList>"
    )
    result = Result(one_rep(info))
    assert result.names == ["init.mp4", "a.m4s", "b.m4s", "c.m4s"]
    assert [item.duration for item in result.items[1:]] == [4.0, 4.0, 4.0]


def test_segment_list_media_ranges_of_one_file_give_one_url() -> None:
    info = (
        "<BaseURL>movie.mp4</BaseURL>"
        '<SegmentList duration="5"><Initialization range="0-999"/>'
        '<SegmentURL mediaRange="1000-1999"/><SegmentURL mediaRange="2000-2999"/>'
        '<SegmentURL media="other.mp4" mediaRange="0-99"/>'
        '<SegmentURL media="other.mp4" mediaRange="100-199"/>'
        "</SegmentList>"
    )
    assert names(one_rep(info)) == ["movie.mp4", "other.mp4"]


def test_an_initialization_without_source_url_never_names_a_directory() -> None:
    listed = (
        "<BaseURL>dir/</BaseURL>"
        '<SegmentList duration="5"><Initialization range="0-9"/>'
        '<SegmentURL media="a.m4s"/><SegmentURL media="b.m4s"/></SegmentList>'
    )
    assert names(one_rep(listed)) == ["dir/a.m4s", "dir/b.m4s"]
    template = (
        '<SegmentTemplate duration="5" media="s$Number$.m4s"><Initialization range="0-9"/>'
        "</SegmentTemplate>"
    )
    assert names(one_rep(template)) == ["s1.m4s", "s2.m4s"]


def test_segment_base_is_the_base_url_file_plus_a_separate_initialization() -> None:
    on_demand = (
        '<BaseURL>video-500k.mp4</BaseURL><SegmentBase indexRange="800-1199">{}</SegmentBase>'
    )
    same_file = on_demand.format('<Initialization range="0-799"/>')
    assert names(one_rep(same_file)) == ["video-500k.mp4"]
    separate = on_demand.format('<Initialization sourceURL="video-init.mp4"/>')
    result = Result(one_rep(separate))
    assert result.names == ["video-init.mp4", "video-500k.mp4"]
    assert [item.kind for item in result.items] == [UrlKind.INIT, UrlKind.SEGMENT]


def test_a_bare_base_url_is_the_one_media_file() -> None:
    # 5.3.9.1: without segment information the Representation is one segment, its BaseURL.
    text = mpd(
        '<Period><AdaptationSet contentType="text" mimeType="text/vtt" lang="en">'
        '<Representation id="sub" bandwidth="200"><BaseURL>subs/en.vtt</BaseURL></Representation>'
        "</AdaptationSet></Period>"
    )
    result = Result(text)
    assert result.names == ["subs/en.vtt"]
    assert result.items[0].duration == 10.0


# --------------------------------------------------------------------------- inheritance


def test_segment_template_attributes_inherit_from_period_and_adaptation_set() -> None:
    text = mpd(
        '<Period><SegmentTemplate timescale="1000" startNumber="0"/>'
        '<AdaptationSet><SegmentTemplate duration="5000" media="$RepresentationID$_$Number$.m4s"'
        ' initialization="$RepresentationID$_init.mp4"/>'
        '<Representation id="lo" bandwidth="1"/>'
        '<Representation id="hi" bandwidth="2"><SegmentTemplate duration="2500"'
        ' startNumber="10"/></Representation>'
        "</AdaptationSet></Period>"
    )
    assert names(text) == [
        "lo_init.mp4", "lo_0.m4s", "lo_1.m4s",
        "hi_init.mp4", "hi_10.m4s", "hi_11.m4s", "hi_12.m4s", "hi_13.m4s",
    ]  # fmt: skip


def test_segment_timeline_is_inherited_from_the_adaptation_set() -> None:
    text = mpd(
        '<Period><AdaptationSet><SegmentTemplate timescale="1" media="$RepresentationID$/$Time$">'
        '<SegmentTimeline><S t="0" d="5" r="1"/></SegmentTimeline></SegmentTemplate>'
        '<Representation id="a" bandwidth="1"/><Representation id="b" bandwidth="1"/>'
        "</AdaptationSet></Period>"
    )
    assert names(text) == ["a/0", "a/5", "b/0", "b/5"]


def test_the_most_specific_level_decides_the_addressing() -> None:
    text = mpd(
        '<Period><AdaptationSet><SegmentTemplate duration="5" media="$Number$.m4s"/>'
        '<Representation id="t" bandwidth="1"/>'
        '<Representation id="b" bandwidth="1"><BaseURL>b.mp4</BaseURL><SegmentBase/>'
        "</Representation></AdaptationSet></Period>"
    )
    assert names(text) == ["1.m4s", "2.m4s", "b.mp4"]


# --------------------------------------------------------------------------- BaseURL


def test_base_url_chains_through_every_level() -> None:
    text = mpd(
        "<BaseURL>media/</BaseURL>"
        "<Period><BaseURL>p1/</BaseURL><AdaptationSet><BaseURL>video/</BaseURL>"
        '<Representation id="v1" bandwidth="1"><BaseURL>720p/</BaseURL>'
        '<SegmentTemplate duration="10" media="s$Number$.m4s"/></Representation>'
        "</AdaptationSet></Period>"
    )
    assert names(text) == ["media/p1/video/720p/s1.m4s"]


def test_an_absolute_base_url_restarts_the_chain_and_resolves_like_a_browser() -> None:
    text = mpd(
        "<BaseURL>media/</BaseURL><Period>"
        "<BaseURL>http://origin.example.com/other/./x/../</BaseURL><AdaptationSet>"
        '<Representation id="v1" bandwidth="1"><BaseURL>a b/</BaseURL>'
        '<SegmentTemplate duration="10" media="s$Number$.m4s"/></Representation>'
        "</AdaptationSet></Period>"
    )
    assert Result(text).urls == ["http://origin.example.com/other/a%20b/s1.m4s"]


def test_alternative_base_urls_use_the_first_and_report_the_others() -> None:
    text = mpd(
        "<BaseURL>http://origin.example.com/a/</BaseURL>"
        '<BaseURL serviceLocation="b">http://origin.example.com/b/</BaseURL>'
        '<Period><AdaptationSet><Representation id="v" bandwidth="1">'
        '<SegmentTemplate duration="10" media="s$Number$.m4s"/>'
        "</Representation></AdaptationSet></Period>"
    )
    result = Result(text)
    assert result.urls == ["http://origin.example.com/a/s1.m4s"]
    assert "alternative BaseURL" in result.skipped["http://origin.example.com/b/"]


def test_every_alternative_base_url_with_the_setting() -> None:
    text = mpd(
        "<BaseURL>http://origin.example.com/a/</BaseURL>"
        "<BaseURL>http://origin.example.com/b/</BaseURL>"
        '<Period><AdaptationSet><Representation id="v" bandwidth="1">'
        "<BaseURL>x/</BaseURL><BaseURL>y/</BaseURL>"
        '<SegmentTemplate duration="5" media="s$Number$.m4s"/>'
        "</Representation></AdaptationSet></Period>"
    )
    result = Result(text, all_base_urls=True)
    assert [url.removeprefix("http://origin.example.com/") for url in result.urls] == [
        "a/x/s1.m4s", "a/x/s2.m4s", "a/y/s1.m4s", "a/y/s2.m4s",
        "b/x/s1.m4s", "b/x/s2.m4s", "b/y/s1.m4s", "b/y/s2.m4s",
    ]  # fmt: skip
    assert result.skipped == {}
    # Each location is its own rendition: head-first takes the start of each.
    assert len({item.rendition for item in result.items}) == 4
    assert len(Result(text).urls) == 2


def test_an_unusable_base_url_skips_what_is_below_it() -> None:
    text = mpd(
        '<Period><AdaptationSet><Representation id="ftp" bandwidth="1">'
        "<BaseURL>ftp://files.example.com/v/</BaseURL>"
        '<SegmentTemplate duration="5" media="s$Number$.m4s"/></Representation>'
        '<Representation id="ok" bandwidth="1"><SegmentTemplate duration="5" media="o$Number$"/>'
        "</Representation></AdaptationSet></Period>"
    )
    result = Result(text)
    assert result.names == ["o1", "o2"]
    assert list(result.skipped.values()) == [
        "unsupported scheme ftp (BaseURL of Representation \"ftp\" of AdaptationSet '0' of"
        ' Period "0")'
    ]


def test_cdn_host_mapping_and_foreign_hosts() -> None:
    text = mpd(
        '<Period><AdaptationSet><Representation id="own" bandwidth="1">'
        '<SegmentTemplate duration="10" media="s$Number$.m4s"/></Representation>'
        '<Representation id="far" bandwidth="1"><BaseURL>https://elsewhere.example.net/x/</BaseURL>'
        '<SegmentTemplate duration="10" media="s$Number$.m4s"/></Representation>'
        "</AdaptationSet></Period>"
    )
    result = Result(text, cdn_host="cdn.example.com")
    assert result.urls == ["http://cdn.example.com/vod/title/s1.m4s"]
    assert result.skipped == {
        "https://elsewhere.example.net/x/s1.m4s": "foreign host elsewhere.example.net"
    }


# --------------------------------------------------------------------------- Periods


def test_period_durations_from_duration_next_start_and_presentation_duration() -> None:
    template = '<SegmentTemplate duration="2" media="{}-$Number$.m4s"/>'

    def period(name: str, attrs: str) -> str:
        return (
            f'<Period id="{name}" {attrs}><AdaptationSet><Representation id="v" bandwidth="1">'
            f"{template.format(name)}</Representation></AdaptationSet></Period>"
        )

    text = mpd(
        period("a", 'duration="PT4S"')  # 4 s by @duration: 2 segments
        + period("b", "")  # starts at 4 s (a's start + duration), ends at c's start: 3 segments
        + period("c", 'start="PT10S"'),  # lasts until mediaPresentationDuration (15 s): 3
        attrs='type="static" mediaPresentationDuration="PT15S"',
    )
    result = Result(text)
    assert result.names == [
        "a-1.m4s", "a-2.m4s", "b-1.m4s", "b-2.m4s", "b-3.m4s", "c-1.m4s", "c-2.m4s", "c-3.m4s",
    ]  # fmt: skip
    # Each Period's Representation has its own head: indexes restart.
    assert [item.index for item in result.items] == [0, 1, 0, 1, 2, 0, 1, 2]
    assert len({item.rendition for item in result.items}) == 3


def test_external_periods_are_reported_as_skipped() -> None:
    text = mpd(
        '<Period id="main" duration="PT5S"><AdaptationSet><Representation id="v" bandwidth="1">'
        '<SegmentTemplate duration="5" media="$Number$.m4s"/></Representation></AdaptationSet>'
        "</Period>"
        '<Period xmlns:xlink="http://www.w3.org/1999/xlink" xlink:href="ads/break1.xml"'
        ' xlink:actuate="onLoad"/>'
        '<Period xmlns:xlink="http://www.w3.org/1999/xlink"'
        ' xlink:href="urn:mpeg:dash:resolve-to-zero:2013"/>'
    )
    result = Result(text)
    assert result.names == ["1.m4s"]
    assert result.skipped == {f"{DIR}ads/break1.xml": "external Period (xlink:href), not expanded"}


def test_external_adaptation_sets_and_segment_lists_are_reported_as_skipped() -> None:
    xlink = 'xmlns:xlink="http://www.w3.org/1999/xlink"'
    text = mpd(
        f'<Period {xlink}><AdaptationSet xlink:href="remote/audio.xml"/>'
        '<AdaptationSet><Representation id="v" bandwidth="1">'
        '<SegmentList xlink:href="remote/list.xml"/></Representation>'
        '<Representation id="w" bandwidth="1"><SegmentTemplate duration="10" media="w$Number$"/>'
        "</Representation></AdaptationSet></Period>"
    )
    result = Result(text)
    assert result.names == ["w1"]
    assert result.skipped == {
        f"{DIR}remote/audio.xml": "external AdaptationSet (xlink:href), not expanded",
        f"{DIR}remote/list.xml": 'external SegmentList of Representation "v" of AdaptationSet'
        " '1' of Period \"0\" (xlink:href), not expanded",
    }


# --------------------------------------------------------------------------- content kinds


def test_video_audio_text_and_image_adaptation_sets_and_content_protection_ignored() -> None:
    text = mpd(
        "<Period>"
        '<AdaptationSet contentType="video" mimeType="video/mp4">'
        '<ContentProtection schemeIdUri="urn:uuid:edef8ba9-79d6-4ace-a3c8-27dcd51d21ed">'
        '<dashif:laurl xmlns:dashif="https://dashif.org/CPS">https://license.example.com/wv'
        "</dashif:laurl></ContentProtection>"
        '<SegmentTemplate duration="5" initialization="$RepresentationID$/init.mp4"'
        ' media="$RepresentationID$/$Number$.m4s"/>'
        '<Representation id="video" bandwidth="1"/></AdaptationSet>'
        '<AdaptationSet contentType="audio" mimeType="audio/mp4" lang="en">'
        '<SegmentTemplate duration="5" initialization="$RepresentationID$/init.mp4"'
        ' media="$RepresentationID$/$Number$.m4s"/>'
        '<Representation id="audio" bandwidth="1"/></AdaptationSet>'
        '<AdaptationSet contentType="text" mimeType="application/mp4" codecs="stpp">'
        '<SegmentTemplate duration="5" media="$RepresentationID$/$Number$.m4s"/>'
        '<Representation id="ttml" bandwidth="1"/></AdaptationSet>'
        '<AdaptationSet contentType="image" mimeType="image/jpeg">'
        '<SegmentTemplate duration="10" media="thumbs/$Number$.jpg"/>'
        '<Representation id="thumbs" bandwidth="1" width="1280" height="720">'
        '<EssentialProperty schemeIdUri="http://dashif.org/thumbnail_tile" value="5x5"/>'
        "</Representation></AdaptationSet>"
        "</Period>"
    )
    result = Result(text)
    assert result.names == [
        "video/init.mp4", "video/1.m4s", "video/2.m4s",
        "audio/init.mp4", "audio/1.m4s", "audio/2.m4s",
        "ttml/1.m4s", "ttml/2.m4s",
        "thumbs/1.jpg",
    ]  # fmt: skip
    assert not any("license" in url for url in result.urls + list(result.skipped))


# --------------------------------------------------------------------------- live, limits, errors


def test_a_dynamic_mpd_is_live_and_only_what_is_listed_is_expanded() -> None:
    text = mpd(
        '<Period id="live" start="PT0S"><AdaptationSet>'
        '<Representation id="tl" bandwidth="1">'
        '<SegmentTemplate timescale="1" media="tl/$Time$.m4s" initialization="tl/init.mp4">'
        '<SegmentTimeline><S t="100" d="2" r="1"/><S d="2" r="-1"/></SegmentTimeline>'
        "</SegmentTemplate></Representation>"
        '<Representation id="clock" bandwidth="1">'
        '<SegmentTemplate duration="2" media="clock/$Number$.m4s" initialization="clock/init.mp4"/>'
        "</Representation></AdaptationSet></Period>",
        attrs='type="dynamic" availabilityStartTime="2026-01-01T00:00:00Z"'
        ' minimumUpdatePeriod="PT2S"',
    )
    result = Result(text)
    assert result.is_live
    assert result.names == [
        "tl/init.mp4",
        "tl/100.m4s",
        "tl/102.m4s",
        "tl/104.m4s",
        "clock/init.mp4",
    ]


def test_over_the_url_limit_is_an_error_naming_the_representation() -> None:
    # r would give 10^12 segments: the count is checked before any is generated.
    info = timeline('<S d="1" r="999999999999"/>')
    message = error(one_rep(info, rep='id="v-huge" bandwidth="1"'), max_urls=1000)
    assert 'Representation "v-huge"' in message
    assert "1,000" in message and "CDN_PREHEAT_MAX_URLS_PER_VIDEO" in message
    template = '<SegmentTemplate timescale="1000" duration="1" media="$Number$"/>'
    assert 'Representation "v1"' in error(one_rep(template), max_urls=1000)


def test_the_limit_counts_the_whole_video() -> None:
    info = '<SegmentTemplate duration="1" media="$RepresentationID$-$Number$"/>'
    text = mpd(
        '<Period><AdaptationSet><Representation id="a" bandwidth="1">'
        f'{info}</Representation><Representation id="b" bandwidth="1">{info}</Representation>'
        "</AdaptationSet></Period>"
    )
    assert len(Result(text, max_urls=21).urls) == 20  # the MPD + 2 x 10 segments
    assert 'Representation "b"' in error(text, max_urls=20)


@pytest.mark.parametrize(
    ("body", "names_in_message"),
    [
        (one_rep("", period='duration="PT1H2X"'), ["Period", "PT1H2X", "ISO 8601"]),
        (one_rep('<SegmentTemplate duration="2" media="$Num$"/>'), ['"v1"', "$Num$"]),
        (one_rep('<SegmentTemplate duration="2" media="$Number.m4s"/>'), ["unmatched $"]),
        (one_rep('<SegmentTemplate duration="2" media="$Number%5d$"/>'), ["bad format"]),
        (one_rep('<SegmentTemplate duration="2" media="$RepresentationID%02d$"/>'), ["bad format"]),
        (one_rep('<SegmentTemplate duration="x" media="$Number$"/>'), ["@duration='x'"]),
        (one_rep('<SegmentTemplate duration="2" media="s" initialization="$Number$"/>'),
         ["$Number$ is not allowed"]),
        (one_rep('<SegmentTemplate duration="2"/>'), ["no @media"]),
        (one_rep(timeline('<S t="0"/>')), ["S element 1 has no @d"]),
        (one_rep(timeline('<S d="1" r="-2"/>')), ["@r='-2'"]),
        (one_rep(""), ['Representation "v1"', "no segment addressing"]),
        (one_rep('<SegmentTemplate media="$RepresentationID$"/>', rep='bandwidth="1"'), ["no @id"]),
        (mpd("", attrs='type="static" mediaPresentationDuration="P1M"'), ["years or months"]),
        (mpd(""), ["no Period"]),
    ],
)  # fmt: skip
def test_bad_mpds_are_one_clear_error_naming_the_element(
    body: str, names_in_message: list[str]
) -> None:
    message = error(body)
    for name in names_in_message:
        assert name in message, message


def test_duration_template_in_a_period_of_unknown_length_is_an_error() -> None:
    text = mpd(
        '<Period><AdaptationSet><Representation id="v1" bandwidth="1">'
        '<SegmentTemplate duration="2" media="$Number$"/>'
        "</Representation></AdaptationSet></Period>",
        attrs='type="static"',
    )
    assert "duration is unknown" in error(text)


BOMB = """<?xml version="1.0"?>
<!DOCTYPE MPD [
 <!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">
 <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
 <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
 <!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
]>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static">
<Period><BaseURL>&d;</BaseURL></Period></MPD>
"""
XXE = """<?xml version="1.0"?>
<!DOCTYPE MPD [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static"><BaseURL>&secret;</BaseURL></MPD>
"""


@pytest.mark.parametrize("text", [BOMB, XXE], ids=["bomb", "xxe"])
def test_entity_bombs_and_external_entities_are_refused(text: str) -> None:
    message = error(text)
    assert "refused" in message and "entit" in message
    assert "root:" not in message  # /etc/passwd was not read


def test_malformed_xml_and_other_roots_are_errors() -> None:
    assert "malformed MPD" in error("<MPD><Period></MPD>")
    assert "not an MPD" in error('<?xml version="1.0"?><html/>')


def test_detection_by_content_type_or_mpd_root() -> None:
    assert looks_like_mpd("anything", "application/dash+xml; charset=utf-8")
    assert looks_like_mpd('\n<?xml version="1.0"?>\n<!-- c -->\n<MPD type="static">')
    assert looks_like_mpd("  <MPD>" + " " * 100_000)
    assert looks_like_mpd('<mpd:MPD xmlns:mpd="urn:mpeg:dash:schema:mpd:2011"/>')
    assert not looks_like_mpd("<html><body>MPD</body></html>", "text/html")
    assert not looks_like_mpd("#EXTM3U\n", "application/vnd.apple.mpegurl")
    assert not looks_like_mpd('<?xml version="1.0"?><SmoothStreamingMedia/>')


# --------------------------------------------------------------------------- property


@settings(max_examples=60, deadline=None)
@given(
    segment=st.integers(min_value=1, max_value=10_000),
    timescale=st.sampled_from([1, 1000, 44100, 90000]),
    period_ms=st.integers(min_value=1, max_value=3_600_000),
    spelled_out=st.booleans(),
)
def test_duration_and_an_equivalent_timeline_give_the_same_count(
    segment: int, timescale: int, period_ms: int, spelled_out: bool
) -> None:
    period = f'duration="PT{period_ms // 1000}.{period_ms % 1000:03d}S"'
    count = math.ceil(period_ms * timescale / (1000 * segment))
    if count > 5000:
        return  # the limit is tested elsewhere; keep examples fast
    by_duration = one_rep(
        f'<SegmentTemplate timescale="{timescale}" duration="{segment}" media="$Number$"/>',
        period=period,
    )
    # The same segments as a timeline: r=-1 to the Period's end, or every repeat spelled out.
    repeat = count - 1 if spelled_out else -1
    by_timeline = one_rep(
        timeline(f'<S t="0" d="{segment}" r="{repeat}"/>', media="$Number$").replace(
            'timescale="1000"', f'timescale="{timescale}"'
        ),
        period=period,
    )
    assert len(names(by_duration)) == len(names(by_timeline)) == count


# --------------------------------------------------------------------------- through the expander


@pytest.fixture(scope="module")
def shared_origin() -> Iterator[ScriptedOrigin]:
    with ScriptedOrigin() as server:
        yield server


@pytest.fixture
def origin(shared_origin: ScriptedOrigin) -> ScriptedOrigin:
    shared_origin.reset()
    return shared_origin


VOD = mpd(
    '<Period><AdaptationSet><SegmentTemplate duration="5" initialization="$RepresentationID$/i.mp4"'
    ' media="$RepresentationID$/$Number$.m4s"/>'
    '<Representation id="hi" bandwidth="2"/><Representation id="lo" bandwidth="1"/>'
    "</AdaptationSet></Period>"
)


def paths(expansion: Expansion, origin: ScriptedOrigin) -> list[str]:
    return [item.url.removeprefix(origin.url("")) for item in expansion.urls]


def test_the_kind_is_decided_by_the_response_not_the_extension(origin: ScriptedOrigin) -> None:
    origin.playlist("/a/stream.xml", VOD, content_type=DASH)
    origin.playlist("/b/stream", VOD, content_type="text/plain")  # sniffed by its <MPD root
    origin.playlist("/c/video.mpd", "#EXTM3U\n#EXTINF:4,\ns.ts\n#EXT-X-ENDLIST\n")
    first = expand(origin.url("/a/stream.xml"), FAST)
    assert paths(first, origin) == [
        "/a/stream.xml", "/a/hi/i.mp4", "/a/hi/1.m4s", "/a/hi/2.m4s",
        "/a/lo/i.mp4", "/a/lo/1.m4s", "/a/lo/2.m4s",
    ]  # fmt: skip
    assert first.urls[0].kind is UrlKind.PLAYLIST and not first.is_live
    assert paths(expand(origin.url("/b/stream"), FAST), origin)[1] == "/b/hi/i.mp4"
    assert paths(expand(origin.url("/c/video.mpd"), FAST), origin) == ["/c/video.mpd", "/c/s.ts"]


def test_a_redirected_mpd_resolves_against_its_final_url(origin: ScriptedOrigin) -> None:
    from scripted_origin import Reply

    origin.script("/short", Reply(redirect="/long/path/manifest.mpd"))
    origin.playlist("/long/path/manifest.mpd", VOD, content_type=DASH)
    result = paths(expand(origin.url("/short"), FAST), origin)
    assert result[:3] == ["/short", "/long/path/manifest.mpd", "/long/path/hi/i.mp4"]


def test_cdn_host_applies_to_the_mpd_and_its_segments(origin: ScriptedOrigin) -> None:
    origin.playlist("/v/manifest.mpd", VOD, content_type=DASH)
    result = expand(origin.url("/v/manifest.mpd"), ExpandOptions(cdn_host="cdn.example.com"))
    assert all(item.url.startswith("http://cdn.example.com/v/") for item in result.urls)


def test_an_mpd_listed_by_an_hls_master_is_an_error(origin: ScriptedOrigin) -> None:
    origin.playlist("/m.m3u8", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.mpd\n")
    origin.playlist("/v.mpd", VOD, content_type=DASH)
    with pytest.raises(PlaylistError, match="MPD listed in an HLS playlist"):
        expand(origin.url("/m.m3u8"), FAST)


def test_a_url_shared_by_two_periods_is_output_once(origin: ScriptedOrigin) -> None:
    shared = (
        '<Period duration="PT5S"><AdaptationSet><Representation id="v" bandwidth="1">'
        '<SegmentTemplate duration="5" initialization="init.mp4" media="{}$Number$.m4s"/>'
        "</Representation></AdaptationSet></Period>"
    )
    origin.playlist("/v/manifest.mpd", mpd(shared.format("a") + shared.format("b")))
    result = paths(expand(origin.url("/v/manifest.mpd"), FAST), origin)
    assert result == ["/v/manifest.mpd", "/v/init.mp4", "/v/a1.m4s", "/v/b1.m4s"]


def test_the_url_limit_comes_from_the_options(origin: ScriptedOrigin) -> None:
    origin.playlist("/v/manifest.mpd", VOD, content_type=DASH)
    with pytest.raises(UrlLimitExceeded, match='Representation "lo"'):
        expand(origin.url("/v/manifest.mpd"), ExpandOptions(max_urls_per_video=5))


def test_all_base_urls_comes_from_the_options(origin: ScriptedOrigin) -> None:
    text = VOD.replace("<Period>", "<BaseURL>one/</BaseURL><BaseURL>two/</BaseURL><Period>")
    origin.playlist("/v/manifest.mpd", text, content_type=DASH)
    first = paths(expand(origin.url("/v/manifest.mpd"), FAST), origin)
    every = expand(origin.url("/v/manifest.mpd"), ExpandOptions(dash_all_base_urls=True))
    assert {p.split("/")[2] for p in first[1:]} == {"one"}
    assert {p.split("/")[2] for p in paths(every, origin)[1:]} == {"one", "two"}


def test_head_first_takes_the_first_segments_or_seconds_of_every_representation() -> None:
    text = mpd(
        '<Period><AdaptationSet><SegmentTemplate duration="1" media="$RepresentationID$/$Number$"/>'
        '<Representation id="a" bandwidth="1"/><Representation id="b" bandwidth="1"/>'
        "</AdaptationSet></Period>"
    )
    result = Result(text)
    expansion = Expansion(MPD_URL, result.items, [], [])
    by_count = prioritize(expansion, HeadFirst(3))
    by_time = prioritize(expansion, HeadFirst(2.5, "seconds"))
    for queued in (by_count, by_time):
        heads = [q.url.removeprefix(DIR) for q in queued if q.priority == PRIORITY_HEAD]
        assert heads == ["a/1", "a/2", "a/3", "b/1", "b/2", "b/3"]
        assert sum(q.priority == PRIORITY_TAIL for q in queued) == 14


def test_settings_reach_the_expander_options(monkeypatch: pytest.MonkeyPatch) -> None:
    from cdn_preheat.app import expand_options
    from cdn_preheat.config import Settings

    monkeypatch.setenv("CDN_PREHEAT_MAX_URLS_PER_VIDEO", "1234")
    monkeypatch.setenv("CDN_PREHEAT_DASH_ALL_BASE_URLS", "true")
    options = expand_options(Settings(_env_file=None))  # type: ignore[call-arg]
    assert (options.max_urls_per_video, options.dash_all_base_urls) == (1234, True)
    assert ExpandOptions().max_urls_per_video == 200_000
