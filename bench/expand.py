"""Expansion throughput: a catalog of HLS videos expanded end to end.

    python bench/expand.py                 # 100 videos x 4 variants x 1,000 segments
    python bench/expand.py --videos 10     # a quick run
    python bench/expand.py --scaling       # 10, 100 and 300 videos, one client process each
    python bench/expand.py --profile       # pyinstrument over the expansion
    python bench/expand.py --dash          # the same catalog as HLS and as DASH MPDs
    python bench/expand.py --memory        # one 700,000-segment video: bytes per URL

The sandbox origin runs in its own process. The client expands every video
with ``expand_many`` (fetch + parse + resolve + host mapping to the CDN host),
counting and dropping each result as it arrives, like ``batch`` queueing
each video. Measured in the same run, over the same media playlists:

- parse: ``m3u8.loads`` alone, then ``parse_playlist`` and ``media_urls``, on
  texts fetched beforehand, so the library's share of the time is visible;
- baseline: the old script's way, each media playlist fetched one after
  another with a blocking client, keeping lines that end in ``.ts``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import SandboxProcess, SandboxSpec, machine_load, peak_rss_mb, table, verdict

TARGET_URLS_PER_SECOND = 40_000
TARGET_SPEEDUP = 10.0
TARGET_RSS_MB = 300.0
SCALING_SIZES = (10, 100, 300)


SOURCE_NAMES = {"hls": "master.m3u8", "dash": "manifest.mpd"}


def video_items(origin: str, videos: int, kind: str = "hls") -> list[tuple[str, str]]:
    name = SOURCE_NAMES[kind]
    return [(f"demo-{n}", f"{origin}/vod/demo-{n}/{name}") for n in range(1, videos + 1)]


def run_expansion(
    origin: str, edge: str, videos: int, concurrency: int, kind: str = "hls"
) -> tuple[int, int, float, float]:
    """(URLs, videos failed, wall s, client CPU s) for the catalog through ``expand_many``."""
    from cdn_preheat.hls import ExpandOptions, expand_many

    options = ExpandOptions(cdn_host=edge, concurrency=concurrency)

    async def consume() -> tuple[int, int]:
        urls = failed = 0
        async for _, result in expand_many(video_items(origin, videos, kind), options):
            if isinstance(result, Exception):
                failed += 1
            else:
                urls += len(result.urls)  # counted and dropped, like batch queueing it
        return urls, failed

    cpu = time.process_time()
    started = time.perf_counter()
    urls, failed = asyncio.run(consume())
    return urls, failed, time.perf_counter() - started, time.process_time() - cpu


def media_playlist_urls(origin: str, spec: SandboxSpec) -> list[str]:
    """Every media playlist of the catalog (what the old script was given, one by one)."""
    from cdn_preheat.sandbox.origin import Origin

    catalog = Origin(videos=spec.videos, variants=spec.variants, segments=spec.segments)
    return [
        f"{origin}{path}"
        for video_id in catalog.video_ids()
        for path in catalog.catalog_paths(video_id)
        if path.endswith("/index.m3u8")
    ]


def run_baseline(urls: list[str]) -> tuple[int, float]:
    """The old parser.py over ``urls``, sequentially: (URLs kept, seconds)."""
    import httpx

    started = time.perf_counter()
    found = 0
    with httpx.Client() as client:
        for m3u8_url in urls:
            response = client.get(m3u8_url)
            response.raise_for_status()
            base_url = m3u8_url.rsplit("/", 1)[0]
            ts_urls = []
            for line in response.text.splitlines():
                if line and not line.startswith("#") and line.endswith(".ts"):
                    ts_urls.append(line if line.startswith("http") else f"{base_url}/{line}")
            found += len(ts_urls)
    return found, time.perf_counter() - started


def run_parse_breakdown(urls: list[str], edge: str) -> dict[str, float]:
    """Seconds inside m3u8.loads, parse_playlist and media_urls over the same texts."""
    import httpx
    import m3u8
    import m3u8.parser

    from cdn_preheat.hls import media_urls, parse_playlist
    from cdn_preheat.urlresolve import HostMap, Resolver, parse_url

    with httpx.Client() as client:
        texts = [(url, client.get(url).text) for url in urls]
    figures: dict[str, float] = {}

    def timed(name: str, step: Callable[[str, str], object]) -> None:
        gc.collect()
        started = time.process_time()
        for url, text in texts:
            step(url, text)
        figures[name] = time.process_time() - started

    timed("m3u8.loads", lambda url, text: m3u8.loads(text, uri=url))
    timed("m3u8.parser.parse", lambda url, text: m3u8.parser.parse(text))
    timed("parse_playlist", lambda url, text: parse_playlist(text, url, url))

    parsed = [(url, parse_playlist(text, url, url)) for url, text in texts]
    hosts = HostMap(parse_url(urls[0]).hostport, edge)
    started = time.process_time()
    for url, playlist in parsed:
        media_urls(playlist, Resolver(url, hosts), url, lambda _u, _r: None)
    figures["media_urls"] = time.process_time() - started
    return figures


def main_run(args: argparse.Namespace) -> int:
    spec = SandboxSpec(videos=args.videos, variants=args.variants, segments=args.segments)
    print(
        f"catalog: {spec.videos} videos x {spec.variants} variants x {spec.segments} segments"
        " (even-numbered videos add audio + subtitle renditions);"
        f" expand_many concurrency {args.concurrency}; {machine_load()}"
    )
    rtts = [0.0] + ([args.origin_rtt] if args.origin_rtt else [])
    new: dict[float, tuple[int, int, float, float]] = {}
    old: dict[float, tuple[int, float]] = {}
    with SandboxProcess(spec) as sandbox:
        rss_before = peak_rss_mb()
        if args.profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.001)
            profiler.start()
        new[0.0] = run_expansion(sandbox.origin, sandbox.edge, spec.videos, args.concurrency)
        if args.profile:
            profiler.stop()
            print(profiler.output_text(unicode=False, color=False, show_all=False))
        rss = peak_rss_mb()  # before anything else runs in this process
        playlists = media_playlist_urls(sandbox.origin, spec)
        keep = {f"/vod/demo-{n}/" for n in range(1, args.baseline_videos + 1)}
        baseline_urls = [u for u in playlists if any(k in u for k in keep)]
        scale = len(playlists) / len(baseline_urls)
        old[0.0] = run_baseline(baseline_urls)
        parse = run_parse_breakdown(playlists, sandbox.edge)
        for rtt in rtts[1:]:
            sandbox.ask(("origin_latency", rtt / 1000))
            new[rtt] = run_expansion(sandbox.origin, sandbox.edge, spec.videos, args.concurrency)
            old[rtt] = run_baseline(baseline_urls)
        load = machine_load()

    urls, _, seconds, cpu = new[0.0]
    rate = urls / seconds
    rows = []
    for rtt in rtts:
        n_urls, n_failed, n_seconds, n_cpu = new[rtt]
        o_found, o_seconds = old[rtt]
        rows.append(
            [f"cdn-preheat, origin RTT {rtt:g} ms" + (f" ({n_failed} failed)" if n_failed else ""),
             f"{n_urls:,}", f"{n_seconds:.2f}", f"{n_urls / n_seconds:,.0f}", f"{n_cpu:.2f}",
             f"{n_urls / n_cpu:,.0f}", ""]
        )  # fmt: skip
        rows.append(
            [f"old parser.py, origin RTT {rtt:g} ms" + (f" (x{scale:.1f})" if scale != 1 else ""),
             f"{round(o_found * scale):,}", f"{o_seconds * scale:.2f}",
             f"{o_found / o_seconds:,.0f}", "", "", f"{o_seconds * scale / n_seconds:.2f}x"]
        )  # fmt: skip
    print()
    print(
        table(
            "End to end: fetch + parse + resolve + CDN host mapping",
            ["", "URLs", "wall s", "URLs/s", "client CPU s", "URLs/CPU-s", "speed-up"],
            rows,
        )
    )
    print(
        f"\nThe old parser is given each media playlist ({len(playlists):,}) and keeps only .ts"
        " lines: no masters, keys, init sections, .aac/.vtt/.m4s, host mapping or checks"
        f" ({urls - round(old[0.0][0] * scale):,} fewer URLs). Speed-up = its wall time over"
        " ours for the same playlists. URLs/CPU-s: what one unloaded core would give."
    )
    print()
    print(
        table(
            f"Parse and resolve, client CPU only, the same {len(playlists):,} media playlists"
            " (texts fetched beforehand)",
            ["step", "CPU s", "us/URL", "URLs/CPU-s"],
            [
                [name, f"{value:.2f}", f"{value / urls * 1e6:.2f}", f"{urls / value:,.0f}"]
                for name, value in parse.items()
            ],
        )
    )
    print(
        "\nm3u8.loads: the library with its object model (what hls.py used to call);"
        " m3u8.parser.parse: the library's parser alone; parse_playlist: what hls.py runs"
        " (parser + tag recorder + checks); media_urls: resolve and map every reference."
    )
    print()
    speedups = [
        [f"speed-up, origin RTT {rtt:g} ms", f">= {TARGET_SPEEDUP:.0f}x",
         f"{old[rtt][1] * scale / new[rtt][2]:.2f}x",
         verdict(old[rtt][1] * scale / new[rtt][2] >= TARGET_SPEEDUP)]
        for rtt in rtts
    ]  # fmt: skip
    rows = [
        ["URLs/s end to end (wall)", f">= {TARGET_URLS_PER_SECOND:,}", f"{rate:,.0f}",
         verdict(rate >= TARGET_URLS_PER_SECOND)],
        ["URLs per client CPU-second", f">= {TARGET_URLS_PER_SECOND:,}", f"{urls / cpu:,.0f}",
         verdict(urls / cpu >= TARGET_URLS_PER_SECOND)],
        *speedups,
        ["peak RSS, client (MB)", f"< {TARGET_RSS_MB:.0f}",
         f"{rss:.0f} (after imports: {rss_before:.0f})", verdict(rss < TARGET_RSS_MB)],
    ]  # fmt: skip
    print(table(f"Targets ({load} at the end)", ["measure", "target", "measured", "result"], rows))
    return 0


def client_only(args: argparse.Namespace) -> int:
    """One scaling point in a fresh process, so its peak RSS is its own."""
    urls, failed, seconds, cpu = run_expansion(
        args.origin, args.edge, args.videos, args.concurrency, args.kind
    )
    point = {"urls": urls, "failed": failed, "seconds": seconds, "cpu": cpu, "rss": peak_rss_mb()}
    json.dump(point, sys.stdout)
    return 0


def client_point(args: argparse.Namespace, sandbox: SandboxProcess, videos: int, kind: str) -> Any:
    """One expansion in a fresh client process: its figures and its own peak RSS."""
    command = [
        sys.executable, str(Path(__file__)), "--client-only", "--videos", str(videos),
        "--origin", sandbox.origin, "--edge", sandbox.edge,
        "--concurrency", str(args.concurrency), "--kind", kind,
    ]  # fmt: skip
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def mpd_parse_breakdown(origin: str, edge: str, videos: int) -> dict[str, float]:
    """CPU seconds in defusedxml's parse and in the whole MPD expansion, texts fetched first."""
    import httpx

    from cdn_preheat.dash import expand_mpd, parse_mpd
    from cdn_preheat.urlresolve import HostMap, parse_url

    with httpx.Client() as client:
        texts = [(url, client.get(url).text) for _, url in video_items(origin, videos, "dash")]
    hosts = HostMap(parse_url(texts[0][0]).hostport, edge)
    figures: dict[str, float] = {}
    gc.collect()
    started = time.process_time()
    for url, text in texts:
        parse_mpd(text, url)
    figures["parse_mpd (defusedxml)"] = time.process_time() - started
    gc.collect()
    started = time.process_time()
    for url, text in texts:
        expand_mpd(text, url, url, url, hosts, lambda _u, _r: None)
    figures["expand_mpd (parse + addressing + resolve)"] = time.process_time() - started
    return figures


def dash_comparison(args: argparse.Namespace) -> int:
    """The same catalog expanded as HLS and as DASH, each in a fresh client process."""
    from cdn_preheat.sandbox.origin import DASH_MODES

    spec = SandboxSpec(videos=args.videos, variants=args.variants, segments=args.segments)
    print(
        f"catalog: {spec.videos} videos x {spec.variants} video variants + audio x"
        f" {spec.segments} segments, served as HLS (master.m3u8) and as DASH (manifest.mpd,"
        f" addressing by video number: {', '.join(DASH_MODES)}; SegmentBase videos have one"
        f" file per Representation); expand_many concurrency {args.concurrency};"
        f" {machine_load()}"
    )
    points: dict[str, Any] = {}
    with SandboxProcess(spec) as sandbox:
        for kind in ("hls", "dash"):
            points[kind] = client_point(args, sandbox, spec.videos, kind)
        parse = mpd_parse_breakdown(sandbox.origin, sandbox.edge, spec.videos)
    rows = [
        [kind.upper(), f"{p['urls']:,}", f"{p['failed']}", f"{p['seconds']:.2f}",
         f"{p['urls'] / p['seconds']:,.0f}", f"{p['cpu']:.2f}",
         f"{p['urls'] / p['cpu']:,.0f}", f"{p['rss']:.0f}"]
        for kind, p in points.items()
    ]  # fmt: skip
    print()
    print(
        table(
            "HLS and DASH side by side: fetch + parse + resolve + CDN host mapping",
            ["", "URLs", "failed", "wall s", "URLs/s", "client CPU s", "URLs/CPU-s",
             "peak RSS MB"],
            rows,
        )
    )  # fmt: skip
    dash_urls = points["dash"]["urls"]
    print()
    print(
        table(
            f"DASH client CPU only, the same {spec.videos} MPDs (texts fetched beforehand)",
            ["step", "CPU s", "us/URL", "URLs/CPU-s"],
            [
                [
                    name,
                    f"{value:.3f}",
                    f"{value / dash_urls * 1e6:.2f}",
                    f"{dash_urls / value:,.0f}" if value else "-",
                ]
                for name, value in parse.items()
            ],
        )
    )
    return 0


def scaling(args: argparse.Namespace) -> int:
    sizes = args.sizes or list(SCALING_SIZES)
    spec = SandboxSpec(videos=max(sizes), variants=args.variants, segments=args.segments)
    print(
        f"scaling: {sizes} videos x {spec.variants} variants x {spec.segments} segments;"
        " each point in a fresh client process (peak RSS is per point);"
        f" {machine_load()}"
    )
    rows = []
    points = []
    with SandboxProcess(spec) as sandbox:
        for videos in sizes:
            command = [
                sys.executable, str(Path(__file__)), "--client-only", "--videos", str(videos),
                "--origin", sandbox.origin, "--edge", sandbox.edge,
                "--concurrency", str(args.concurrency),
            ]  # fmt: skip
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            point = json.loads(out)
            points.append(point)
            rows.append(
                [
                    videos,
                    f"{point['urls']:,}",
                    f"{point['seconds']:.2f}",
                    f"{point['seconds'] / point['urls'] * 1e6:.2f}",
                    f"{point['urls'] / point['seconds']:,.0f}",
                    f"{point['cpu'] / point['urls'] * 1e6:.2f}",
                    f"{point['rss']:.0f}",
                ]
            )
    print()
    print(
        table(
            "Scaling (expand_many, results counted and dropped)",
            ["videos", "URLs", "wall s", "wall us/URL", "URLs/s", "CPU us/URL", "peak RSS MB"],
            rows,
        )
    )
    per_url = [p["cpu"] / p["urls"] for p in points]
    spread = max(per_url) / min(per_url)
    rss_growth = points[-1]["rss"] / points[0]["rss"]
    size_growth = points[-1]["urls"] / points[0]["urls"]
    print(
        f"\nCPU time per URL varies x{spread:.2f} across sizes (linear time: ~1); {machine_load()};"
        f" URLs grew x{size_growth:.0f} while peak RSS grew x{rss_growth:.2f} (bounded: ~1)"
    )
    return 0


TARGET_BYTES_PER_URL = 300


def memory_point(args: argparse.Namespace) -> int:
    """One video expanded and queued into a SQLite ledger, in this fresh process.

    tracemalloc follows every Python allocation from before the fetch to the
    end of queueing; the URL strings themselves (``sys.getsizeof``) are
    subtracted, since they are the work. SQLite's own memory is not Python's:
    the RSS growth shows it.
    """
    import tempfile
    import tracemalloc

    from cdn_preheat.hls import ExpandOptions, expand
    from cdn_preheat.ledger.sqlite import SqliteLedger
    from cdn_preheat.pipeline import DEFAULT_HEAD_FIRST, queue_expansion

    options = ExpandOptions(
        cdn_host=args.edge, max_bytes=1 << 30, max_urls_per_video=10**8, timeout=120
    )
    url = f"{args.origin}/vod/demo-1/master.m3u8"
    with tempfile.TemporaryDirectory() as folder:
        ledger = SqliteLedger(f"{folder}/ledger.sqlite3")
        ledger.get_video("warm-up")  # schema created, imports done
        gc.collect()
        rss_before = peak_rss_mb()
        trace = not args.rss_only  # tracemalloc's own records would swell the RSS
        if trace:
            tracemalloc.start()
        started = time.perf_counter()
        expansion = expand(url, options)
        expand_peak = tracemalloc.get_traced_memory()[1] if trace else 0
        tracemalloc.reset_peak()
        queue_expansion(
            ledger, "tencent", "mainland", "demo-1", expansion,
            head_first=DEFAULT_HEAD_FIRST, max_age=dt.timedelta(days=3),
        )  # fmt: skip
        queue_peak = tracemalloc.get_traced_memory()[1] if trace else 0
        seconds = time.perf_counter() - started
        tracemalloc.stop()
        rss = peak_rss_mb()
        urls = len(expansion.urls)
        url_bytes = sum(sys.getsizeof(item) for item in expansion.urls.urls)  # type: ignore[attr-defined]
        ledger.close()
    point = {
        "urls": urls,
        "url_bytes": url_bytes,
        "expand_peak": expand_peak,
        "queue_peak": queue_peak,
        "seconds": seconds,
        "rss_growth": rss - rss_before,
    }
    json.dump(point, sys.stdout)
    return 0


def memory(args: argparse.Namespace) -> int:
    """Two videos, a quarter and the full size: the difference is what one more URL costs.

    A client's fixed cost (the TLS context, the event loop, imports done late)
    is the same at both sizes, so the slope between them is the memory that
    grows with the work.
    """
    segments = args.segments if args.segments != 1000 else 700_000
    sizes = (segments // 4, segments)
    print(
        f"memory: one video, 1 variant x {sizes[0]:,} and {sizes[1]:,} segments, each expanded"
        " and queued into a SQLite ledger in a fresh client process (tracemalloc on);"
        f" {machine_load()}"
    )
    points = []
    for size in sizes:
        with SandboxProcess(SandboxSpec(videos=1, variants=1, segments=size)) as sandbox:
            command = [
                sys.executable, str(Path(__file__)), "--memory-point",
                "--origin", sandbox.origin, "--edge", sandbox.edge,
            ]  # fmt: skip
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            point = json.loads(out)
            untraced = [*command, "--rss-only"]
            out = subprocess.run(untraced, check=True, capture_output=True, text=True).stdout
            point["rss_growth"] = json.loads(out)["rss_growth"]
            point["seconds"] = json.loads(out)["seconds"]
        points.append(point)
    small, large = points
    urls = large["urls"] - small["urls"]
    url_bytes = large["url_bytes"] - small["url_bytes"]
    rows = []
    for phase, name in (
        ("expand", "expand (fetch + parse + resolve)"),
        ("queue", "queue (prioritise + ledger enqueue)"),
    ):
        peak = large[f"{phase}_peak"]
        slope = (peak - small[f"{phase}_peak"]) / urls
        beyond = slope - url_bytes / urls
        rows.append(
            [name, f"{small[f'{phase}_peak'] / 1e6:,.1f}", f"{peak / 1e6:,.1f}",
             f"{slope:,.0f}", f"{beyond:,.0f}", f"< {TARGET_BYTES_PER_URL}",
             verdict(beyond < TARGET_BYTES_PER_URL)]
        )  # fmt: skip
    print()
    print(
        table(
            f"Peak Python memory, {small['urls']:,} and {large['urls']:,} URLs"
            f" (URL strings: {url_bytes / urls:.0f} bytes each)",
            [
                "phase",
                f"peak MB, {small['urls']:,}",
                f"peak MB, {large['urls']:,}",
                "bytes per more URL",
                "beyond the URL",
                "target",
                "result",
            ],
            rows,
        )
    )
    rss = (large["rss_growth"] - small["rss_growth"]) * 1e6 / urls
    print(
        f"\nWithout tracemalloc: wall {large['seconds']:.1f} s for {large['urls']:,} URLs;"
        f" peak RSS growth {small['rss_growth']:,.0f} and {large['rss_growth']:,.0f} MB:"
        f" {rss:,.0f} bytes per more URL, {rss - url_bytes / urls:,.0f} beyond the URL"
        " (SQLite's page cache and temp table, and allocator slack, included)"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=100)
    parser.add_argument("--variants", type=int, default=4)
    parser.add_argument("--segments", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16, help="ExpandOptions.concurrency")
    parser.add_argument(
        "--baseline-videos", type=int, default=None, help="run the old way on fewer, scaled"
    )
    parser.add_argument(
        "--origin-rtt", type=float, default=20.0, help="also run with the origin this many ms away"
    )
    parser.add_argument("--profile", action="store_true", help="pyinstrument the expansion")
    parser.add_argument("--scaling", action="store_true", help="10, 100 and 300 videos")
    parser.add_argument("--sizes", type=int, nargs="*", help="scaling sizes instead")
    parser.add_argument("--dash", action="store_true", help="HLS and DASH side by side")
    parser.add_argument(
        "--kind", choices=sorted(SOURCE_NAMES), default="hls", help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--memory", action="store_true", help="bytes per URL: one video (--segments, 700,000)"
    )
    parser.add_argument("--memory-point", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rss-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--origin", help=argparse.SUPPRESS)
    parser.add_argument("--edge", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_videos is None:
        args.baseline_videos = args.videos
    if args.memory_point:
        return memory_point(args)
    if args.memory:
        return memory(args)
    if args.client_only:
        return client_only(args)
    if args.dash:
        return dash_comparison(args)
    if args.scaling or args.sizes:
        return scaling(args)
    return main_run(args)


if __name__ == "__main__":
    sys.exit(main())
