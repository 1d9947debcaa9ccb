"""Purge (refresh) cached content: URLs, directories, or every URL of a video.

The library behind ``cdn-preheat purge`` and ``push --reset --purge``.
Requests stay within the provider's purge batch limits and request rate;
each accepted request is recorded in the ledger as a task of kind
``purge`` (apart from prefetch tasks and the prefetch quota) and followed
with ``purge_status`` until it is done or the deadline passes.

Timestamp anti-leech parameters (``sign``, ``t``) are stripped first, for
every provider: a CDN caches, and so refreshes, the URL without them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from urllib.parse import urlsplit

from cdn_preheat import stopping
from cdn_preheat.clock import utcnow
from cdn_preheat.errors import BatchRefused, InputError, InvalidUrls, QuotaExhausted
from cdn_preheat.ledger.base import Ledger, UrlState
from cdn_preheat.providers.base import Provider, TaskEntry, TaskState
from cdn_preheat.ratelimit import RateLimiter, call_with_retries
from cdn_preheat.signing import strip_anti_leech

TASK_KIND = "purge"
FIRST_POLL_SECONDS = 0.25


@dataclass(frozen=True)
class PurgeOptions:
    wait: bool = True  # follow the tasks until done
    timeout: float = 600.0  # seconds to follow them
    poll_interval: float = 1.0  # the longest wait between polls; the first is shorter
    max_retries: int = 5  # per request, on rate-limit and transient answers


@dataclass
class PurgeReport:
    """What was asked, accepted and finished. Counts are URLs plus directories."""

    provider: str
    urls: int = 0
    dirs: int = 0
    submitted: int = 0
    not_submitted: int = 0
    tasks: list[str] = field(default_factory=list)
    done: int = 0
    failed: int = 0
    processing: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    timed_out: bool = False
    quota_exhausted: QuotaExhausted | None = None
    left: list[str] = field(default_factory=list)  # not submitted: quota spent or stopped


def clean_urls(urls: Iterable[str], *, what: str = "URL") -> list[str]:
    """Absolute http(s) URLs without anti-leech parameters, each once, in order."""
    cleaned: list[str] = []
    for given in urls:
        url = given.strip()
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InputError(f"not an http(s) {what}: {url[:200]!r}")
        cleaned.append(strip_anti_leech(url))
    return list(dict.fromkeys(cleaned))


def clean_dirs(dirs: Iterable[str]) -> list[str]:
    """Directory URLs as CDNs take them: ending in ``/`` (or Qiniu's ``/*``)."""
    cleaned = clean_urls(dirs, what="directory URL")
    return list(dict.fromkeys(d if d.endswith(("/", "/*")) else f"{d}/" for d in cleaned))


def video_urls(ledger: Ledger, video_id: str) -> list[str]:
    """Every URL the ledger holds for the video that reached, or was meant for, the CDN."""
    video = ledger.get_video(video_id)
    if video is None:
        raise InputError(f"no video {video_id!r} in the ledger.")
    urls = [r.url for r in ledger.url_records(video_id) if r.state is not UrlState.SKIPPED]
    if not urls:
        raise InputError(
            f"the ledger holds no URLs for video {video_id!r} "
            "(videos recorded by the old script kept no URL list); purge its directory instead."
        )
    return list(dict.fromkeys(urls))


def purge(
    ledger: Ledger,
    provider: Provider,
    urls: Sequence[str] = (),
    dirs: Sequence[str] = (),
    *,
    delete: bool = False,
    options: PurgeOptions | None = None,
    on_progress: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
) -> PurgeReport:
    """Purge ``urls`` and ``dirs`` (already cleaned), then follow the tasks.

    A purge larger than the quota left submits what fits; the rest is listed
    in ``left`` and the spent quota reported in ``quota_exhausted``. What was
    accepted is followed.
    """
    if delete and dirs and not provider.features.purge_delete:
        # Qiniu's directory refresh only marks cached copies stale; it has no delete mode.
        raise InputError(
            f"CDN_PROVIDER={provider.name} cannot delete cached copies (its directory refresh "
            "only marks them stale); purge the directories without --delete."
        )
    # Bound to the purge's run: a signal sets ``stop`` too, and the limiter's waits
    # and the retries' backoffs wake on it (stopping.current).
    with stopping.bound(stop) as bound_stop:
        return _purge(ledger, provider, urls, dirs, delete, options or PurgeOptions(),
                      on_progress, bound_stop)  # fmt: skip


def _purge(
    ledger: Ledger,
    provider: Provider,
    urls: Sequence[str],
    dirs: Sequence[str],
    delete: bool,
    options: PurgeOptions,
    on_progress: Callable[[int], None] | None,
    stop: threading.Event,
) -> PurgeReport:
    report = PurgeReport(provider.name, urls=len(urls), dirs=len(dirs))
    limiter = RateLimiter(provider.limits.requests_per_second)
    batches = [
        *(("urls", chunk) for chunk in _chunks(urls, provider.limits.purge_batch_size)),
        *(("dirs", chunk) for chunk in _chunks(dirs, provider.limits.purge_dir_batch_size)),
    ]
    # A request larger than the quota left is refused whole (Tencent
    # LimitExceeded.CdnPurgeUrlExceedDayLimit, Qiniu 400034), and no provider
    # says how much is left in every answer: halve a refused request until what
    # fits is accepted; a single refused item means that kind's quota is spent.
    # Refused requests cost no quota.
    spent: dict[str, QuotaExhausted] = {}
    left: list[str] = []
    while batches:
        kind, batch = batches.pop(0)
        if kind in spent:
            left.extend(batch)
            continue
        if stop.is_set():
            left.extend(batch)
            left.extend(item for _, rest in batches for item in rest)
            break

        def request(kind: str = kind, batch: list[str] = batch) -> str:
            if kind == "urls":
                return provider.purge_urls(batch)
            return provider.purge_dirs(batch, delete=delete)

        try:
            # A purge is idempotent, so a request whose answer was lost may be repeated.
            task_id = call_with_retries(request, limiter, attempts=options.max_retries)
        except (BatchRefused, InvalidUrls) as exc:
            if isinstance(exc, BatchRefused) and not exc.per_host:
                raise
            if isinstance(exc, InvalidUrls) and exc.task_id is not None:
                raise  # the rest was accepted as a task: not a refusal of the input
            # URLs on a host the account does not have (Tencent's host codes, every
            # target in EdgeOne's FailedList): the input is wrong (exit 2), not the
            # CDN; pushes isolate such URLs, a purge names them.
            raise InputError(f"{exc} Purge only URLs of the account's CDN domains.") from None
        except QuotaExhausted as exc:
            if len(batch) > 1:
                half = len(batch) // 2
                batches[:0] = [(kind, batch[:half]), (kind, batch[half:])]
            else:
                spent[kind] = exc
                left.extend(batch)
            continue
        ledger.record_task(task_id, provider.name, provider.area, TASK_KIND, len(batch), utcnow())
        report.tasks.append(task_id)
        report.submitted += len(batch)
    report.not_submitted = len(left)
    report.left = left
    if spent:
        first = next(iter(spent.values()))
        what = " and ".join("URL" if kind == "urls" else "directory" for kind in spent)
        report.quota_exhausted = QuotaExhausted(
            f"{provider.name}'s {what} purge quota for today is spent ({first.code or first}): "
            f"{report.submitted} of {len(urls) + len(dirs)} URLs and directories were "
            f"submitted, {report.not_submitted} were not; run again after the quota resets.",
            code=first.code,
        )
    if options.wait and report.tasks:
        _follow(ledger, provider, report, options, limiter, on_progress, stop)
    else:
        report.processing = report.submitted
    return report


def _follow(
    ledger: Ledger,
    provider: Provider,
    report: PurgeReport,
    options: PurgeOptions,
    limiter: RateLimiter,
    on_progress: Callable[[int], None] | None,
    stop: threading.Event,
) -> None:
    """Poll the open tasks until every entry settles, the deadline passes or ``stop``."""
    deadline = time.monotonic() + options.timeout
    # Small purges finish in moments: look soon, then back off to poll_interval.
    interval = min(FIRST_POLL_SECONDS, options.poll_interval)
    open_tasks = list(report.tasks)
    while open_tasks:
        ids = list(open_tasks)
        entries = call_with_retries(
            partial(provider.purge_status, ids), limiter, attempts=options.max_retries
        )
        for task_id, task_entries in _by_task(ids, entries):
            if not task_entries or any(e.state is TaskState.PROCESSING for e in task_entries):
                continue
            open_tasks.remove(task_id)
            ledger.close_task(task_id, provider.name)
            for entry in task_entries:
                if entry.state is TaskState.DONE:
                    report.done += 1
                else:
                    report.failed += 1
                    report.failures[entry.url] = entry.reason or str(entry.state)
            if on_progress is not None:
                on_progress(len(task_entries))
        if not open_tasks or stop.is_set():
            break
        if time.monotonic() >= deadline:
            report.timed_out = True
            break
        stop.wait(interval)
        interval = min(interval * 2, options.poll_interval)
    report.processing = max(0, report.submitted - report.done - report.failed)


def _by_task(
    task_ids: Sequence[str], entries: Sequence[TaskEntry]
) -> Iterator[tuple[str, list[TaskEntry]]]:
    grouped: dict[str, list[TaskEntry]] = {task_id: [] for task_id in task_ids}
    for entry in entries:
        grouped.setdefault(entry.task_id, []).append(entry)
    for task_id in task_ids:
        yield task_id, grouped[task_id]


def _chunks(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
