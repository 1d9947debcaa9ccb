"""Progress of the library's long calls as Rich bars, and Ctrl-C while pushing.

Imported by the command bodies only (it loads the library API).
"""

from __future__ import annotations

import contextlib
from typing import Any

from cdn_preheat.api import Observer, PurgeResult, QueueResult


class Bars(Observer):
    """The library's progress, drawn as Rich bars on stderr (silent when not a terminal).

    With ``signals``, for as long as the bars are open (expansion, queueing,
    pushing, following) the first SIGINT/SIGTERM sets the stop event the
    command passed (``stopping.STOP``): the expansion ends at once, the run
    settles its batches in flight, the summary of what was queued and pushed
    is printed and the command exits 130; a second signal quits at once.
    """

    NOTICE = "stopping: settling the batches in flight (press Ctrl-C again to quit at once)"

    def __init__(
        self, push_title: str = "pushing", *, purge_bar: bool = True, signals: bool = False
    ) -> None:
        self.push_title = push_title
        self.catch_signals = signals
        self.purge_bar = purge_bar
        self._stack = contextlib.ExitStack()
        self._bar: Any = None
        self._bar_stack: contextlib.ExitStack | None = None

    def __enter__(self) -> Bars:
        from cdn_preheat.stopping import on_signals

        if self.catch_signals:
            self._stack.enter_context(on_signals(self.NOTICE))
        return self

    def __exit__(self, *exc: object) -> None:
        self._close_bar()
        self._stack.close()

    def _open_bar(self, title: str, total: int | None, *, enabled: bool = True) -> None:
        from cdn_preheat import ui

        self._close_bar()
        self._bar_stack = contextlib.ExitStack()
        self._bar = self._bar_stack.enter_context(ui.progress(title, total, enabled=enabled))

    def _close_bar(self) -> None:
        if self._bar_stack is not None:
            self._bar_stack.close()
        self._bar, self._bar_stack = None, None

    def _advance(self, n: int) -> None:
        if self._bar is not None:
            self._bar(n)

    def expanding(self, videos: int) -> None:
        self._open_bar("expanding", videos)

    def queued(self, video: QueueResult) -> None:
        self._advance(1)

    def pushing(self, pending: int) -> None:
        self._open_bar(self.push_title, pending, enabled=pending > 0)

    def pushed(self, urls: int) -> None:
        self._advance(urls)

    def following(self, open_tasks: int, done: int, processing: int, settled: int) -> None:
        # The bar goes on while the CDN works: settled URLs of those pushed.
        if self._bar is not None:
            self._bar.update(
                f"following {open_tasks:,} tasks: {done:,} done, {processing:,} processing",
                completed=settled,
                total=max(settled + processing, 1),
            )

    def purged_before_push(self, video_id: str, result: PurgeResult | None) -> None:
        from cdn_preheat import ui

        if result is None:
            ui.note(f"{video_id} is not in the ledger: nothing to purge.")
        else:
            ui.note(f"purged {result.submitted} URLs of {video_id}; pushing the new version.")

    def purging(self, items: int, provider: str) -> None:
        self._open_bar(f"purging on {provider}", items, enabled=self.purge_bar)

    def purged(self, items: int) -> None:
        self._advance(items)

    def probing(self, probes: int) -> None:
        self._open_bar("probing", probes)

    def probed(self, probes: int) -> None:
        self._advance(probes)
