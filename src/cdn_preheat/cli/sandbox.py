"""``sandbox`` and ``demo``: the local emulators, and a preheat on them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from cdn_preheat.cli._common import app, load_settings


@app.command()
def sandbox(
    port: Annotated[
        int, typer.Option(help="First port; the servers take consecutive ports. 0: any free.")
    ] = 0,
    videos: Annotated[int, typer.Option(help="Generated videos demo-1..demo-N.")] = 3,
    segments: Annotated[int, typer.Option(help="Segments per variant.")] = 20,
    faults: Annotated[
        str,
        typer.Option(
            help="Fault chances on every API, e.g. 5xx=0.1,drop=0.1,lost=0.05,slow=0.05,rate=0.1"
            " (lost: done but unanswered; slow: answered --slow-ms late)."
        ),
    ] = "",
    latency_ms: Annotated[float, typer.Option(help="Milliseconds added to every API answer.")] = 0,
    slow_ms: Annotated[float, typer.Option(help="How late a 'slow' answer comes.")] = 3000,
    quota: Annotated[
        str, typer.Option(help="Daily prefetch quota per vendor, e.g. tencent=1000,qiniu=100.")
    ] = "",
    rate: Annotated[
        str, typer.Option(help="Request rate per vendor, e.g. tencent=20,aliyun=50,qiniu=240.")
    ] = "",
    rate_counting: Annotated[
        str,
        typer.Option(
            help="How every API counts its rate: sliding (any one second), fixed (each"
            " second of the clock) or bucket (a token bucket of a second's worth).",
        ),
    ] = "sliding",
    targets: Annotated[
        Path | None,
        typer.Option(
            help="Also run a second Tencent account (tencent-b, its own keys and quota) and"
            " write a targets file here for tencent, tencent-b, qiniu and edgeone; the keys'"
            " variables are printed with the endpoints. Each account then owns a host of the"
            " edge of its own (its cdn_host in the file), so verify tells them apart.",
        ),
    ] = None,
) -> None:
    """Run the local emulators (HLS origin, CDN APIs, edge) in the foreground.

    Each API answers GET /_sandbox/received with what it accepted. The Qiniu
    account has a bucket, sandbox-vod, holding the generated videos' playlists.
    """
    from cdn_preheat import ui
    from cdn_preheat.sandbox.server import (
        DEMO_BUCKET,
        Sandbox,
        parse_faults,
        parse_per_vendor,
        parse_rate_counting,
        run_forever,
    )

    injected = parse_faults(faults, latency_ms=latency_ms, slow_ms=slow_ms)
    quotas, rates = parse_per_vendor(quota, "--quota"), parse_per_vendor(rate, "--rate")
    counting = parse_rate_counting(rate_counting)
    accounts = {}
    if targets is not None:
        from cdn_preheat.sandbox.server import TencentAccount

        accounts = {"tencent-b": TencentAccount()}
    with _listening(port):
        box = Sandbox.from_settings(
            load_settings(), videos=videos, segments=segments, first_port=port,
            faults=injected, tencent_accounts=accounts, edge_per_account=targets is not None,
            rate_counting=counting,
        )  # fmt: skip
    box.set_limits(quota=quotas, rate=rates)
    box.fill_demo_bucket(DEMO_BUCKET)

    def ready(endpoints: dict[str, str]) -> None:
        extra: dict[str, str] = {}
        if targets is not None:
            from cdn_preheat.demo_targets import DEMO_TARGETS

            extra = box.targets_file(targets, DEMO_TARGETS)  # public sandbox keys only
        ui.print_json({**endpoints, "qiniu_bucket": DEMO_BUCKET, **extra})

    with _listening(port):
        run_forever(box, ready)


@contextmanager
def _listening(port: int) -> Iterator[None]:
    """A port already taken (another sandbox, say) is one sentence, exit 2."""
    import errno

    from cdn_preheat.errors import ConfigError

    try:
        yield
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise ConfigError(
            f"a port from {port} to {port + 5} is already in use (another sandbox?);"
            " choose another --port, or 0 for any free ones."
        ) from None


@app.command()
def demo(
    provider: Annotated[
        str, typer.Option(help="Which emulated CDN: tencent, edgeone, qiniu, aliyun.")
    ] = "tencent",
    videos: Annotated[int, typer.Option(help="How many generated videos to preheat.")] = 3,
    db: Annotated[
        Path | None, typer.Option(help="Ledger file to keep; a temporary one by default.")
    ] = None,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve",
            help="Run the HTTP API and dashboard over the sandbox instead (prints a token and"
            " curl lines; Ctrl-C stops).",
        ),
    ] = False,
    port: Annotated[int, typer.Option(help="With --serve: the port (0: any free).")] = 8000,
    targets: Annotated[
        bool,
        typer.Option(
            "--targets",
            help="Preheat into four sandbox accounts at once (two Tencent, Qiniu, EdgeOne)"
            " from a targets file, and show the per-target table.",
        ),
    ] = False,
) -> None:
    """Start the sandbox and preheat a few generated videos through the real code path."""
    if serve:
        from cdn_preheat.service.demo import serve_demo

        raise typer.Exit(serve_demo(provider=provider, videos=videos, db=db, port=port))
    if targets:
        from cdn_preheat.demo_targets import run_targets_demo

        run = run_targets_demo(videos=videos, db=db)
        if run.exit_code:
            raise typer.Exit(run.exit_code)
        return
    from cdn_preheat.cli._bars import Bars
    from cdn_preheat.demo import run_demo

    run_demo(provider=provider, videos=videos, db=db, progress=lambda title: Bars(push_title=title))
