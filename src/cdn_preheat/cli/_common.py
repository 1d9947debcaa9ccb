"""What every command module shares: the Typer app, common options, settings and stores.

Nothing heavy is imported here: each command imports what it needs in its body,
so ``cdn-preheat --help`` loads only Typer and these modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from cdn_preheat.api import DrainResult, Preheater
    from cdn_preheat.config import Settings
    from cdn_preheat.ledger.base import Ledger
    from cdn_preheat.providers.base import Provider

app = typer.Typer(
    name="cdn-preheat",
    help="Preheat HLS video into CDNs before viewers arrive.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

EXIT_QUOTA = 3
EXIT_INTERRUPTED = 130

JsonOption = Annotated[bool, typer.Option("--json", help="Print results as JSON.")]
StrictOption = Annotated[
    bool,
    typer.Option(
        "--strict",
        help="Fail the video on a malformed tag or a rendition that cannot be read"
        " (default: warn, skip that rendition, queue the rest, exit 1).",
    ),
]


class State:
    debug = False


def load_settings(**overrides: Any) -> Settings:
    from cdn_preheat.config import load_settings as load

    return load(**overrides)


def open_ledger(settings: Settings, *, read_only: bool = False) -> Ledger:
    from cdn_preheat.ledger import open_ledger as open_store

    return open_store(settings, read_only=read_only)


def open_provider(settings: Settings) -> Provider:
    from cdn_preheat.providers import make_provider

    return make_provider(settings)


def check_video_id(video_id: str) -> None:
    from cdn_preheat.errors import InputError
    from cdn_preheat.source import video_id_problem

    problem = video_id_problem(video_id)
    if problem is not None:
        raise InputError(f"{problem}; give the id you use for the video, e.g. ep-101.")


def exit_if_partial(videos: list[Any]) -> None:
    """Exit 1 when renditions of a video were skipped because they could not be read."""
    if any(video.partial for video in videos):
        raise typer.Exit(1)


def domain_or_host(domain: str | None, settings: Settings) -> str:
    from cdn_preheat.errors import InputError

    name = (domain or settings.cdn_host or "").strip()
    if not name:
        raise InputError("give --domain (or set CDN_HOST).")
    return name


def preheater(settings: Settings, *, read_only: bool = False) -> Preheater:
    """The library's preheater for these settings; commands use it in a ``with`` block."""
    from cdn_preheat.api import Preheater

    return Preheater.from_settings(settings, read_only=read_only)


def exit_for(run: DrainResult) -> None:
    """The exit code a push run ends with: 130 interrupted, the error's, 3 quota, 1 not done."""
    from cdn_preheat import ui

    if run.interrupted:
        ui.note(
            f"interrupted: the batches in flight were settled; {run.pending} URLs stay"
            " queued for the next run."
        )
        raise typer.Exit(EXIT_INTERRUPTED)
    if run.error is not None:
        raise run.error
    if run.quota_spent_with_work_left:
        raise typer.Exit(EXIT_QUOTA)
    if run.reserved:
        # Held by another run, or by one that was killed: not done, whatever else went well.
        ui.note(
            f"{run.reserved} URLs are reserved by another run (or one that was killed) and were"
            " not pushed by this one; a dead run's reservation is reconciled once its lease"
            " (CDN_PREHEAT_LEASE_SECONDS) expires: run again then."
        )
        raise typer.Exit(1)
    if run.failed_urls:
        ui.note(f"{run.failed_urls} URLs could not be prefetched after every attempt; see status.")
        raise typer.Exit(1)
    if run.invalid_videos:
        ui.note(f"every URL of {', '.join(run.invalid_videos)} was refused as invalid; see status.")
        raise typer.Exit(1)
