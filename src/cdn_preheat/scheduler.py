"""Push queued URLs to a provider: batches, quota, pacing, retries, crash recovery.

Each batch follows the ledger protocol (docs/architecture.md, "The ledger protocol"):

1. reserve quota in the ledger (atomic, shared by every worker);
2. claim up to that many pending URLs with a lease;
3. call the provider;
4. record the task id (or release the URLs) and settle the reservation, in one ledger step.

A worker killed between 2 and 4 leaves a reserved batch whose lease expires;
the next run asks the provider's task list which of those URLs arrived
(:func:`reconcile_expired`) instead of pushing them blindly again.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import socket
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Protocol, TypeVar
from urllib.parse import urlsplit

from cdn_preheat import clock, stopping
from cdn_preheat.errors import (
    BatchRefused,
    BatchTooLarge,
    DomainError,
    InvalidUrls,
    PreheatError,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    Transient,
)
from cdn_preheat.ledger.base import Claim, Ledger
from cdn_preheat.providers.base import Provider, Quota, SubmitResult, paced_seconds
from cdn_preheat.ratelimit import call_with_retries
from cdn_preheat.retrying import backoff_delay

log = logging.getLogger(__name__)
T = TypeVar("T")

# Before declaring the quota spent, how long to wait for other workers' batches
# in flight to settle (their reservations may be all that is left).
SETTLE_WAITS = 40
SETTLE_WAIT_SECONDS = 0.25

# How far back to look in the provider's task list for a batch whose answer was lost.
RECONCILE_MARGIN = dt.timedelta(minutes=2)

# Pushes in flight when CDN_PREHEAT_CONCURRENCY is unset: this many to start with,
# more while the rate and the round trip need them, never more than MAX_IN_FLIGHT
# (CDN_PREHEAT_CONCURRENCY's own bound, and the http provider's MAX_CONCURRENT_BATCHES).
# No vendor documents a limit on concurrent requests, only on requests a second.
DEFAULT_CONCURRENCY = 4
MAX_IN_FLIGHT = 64
# The batches whose round trip sizes the pushes in flight: the latest this many.
ROUND_TRIP_SAMPLES = 32
# Requests in flight per round trip's worth of the rate: the round trip is not the
# whole of a worker's cycle (the ledger steps, the answer's processing, a starved
# CPU), and a spare worker only waits in the limiter, holding one claim's lease.
# With 1 (rate x round trip + 1), a loaded machine left each target ~20 % short;
# with 2 and the p90, a 50 ms account got 8-12 threads, and every thread past
# what the rate needs cost throughput (bench/push.py --workers 1 --concurrency
# 4/6/8/12: 93.9/93.0/90.3/82.3 % of the ceiling), so 1.5 times the median.
HEADROOM = 1.5

# The time helpers live in clock.py; these names stay importable from here for
# callers written before it.
utcnow = clock.utcnow
quota_day = clock.quota_day
seconds_until_next_day = clock.seconds_until_next_day


def _by_host(urls: Sequence[str]) -> list[Sequence[str]]:
    """``urls`` grouped by host (scheme and netloc), in order of first appearance."""
    groups: dict[str, list[str]] = {}
    for url in urls:
        parts = urlsplit(url)
        groups.setdefault(f"{parts.scheme.lower()}://{parts.netloc.lower()}", []).append(url)
    return list(groups.values())


def _by_task(found: Mapping[str, str]) -> dict[str, list[str]]:
    """task id -> its URLs, from URL -> task id."""
    by_task: dict[str, list[str]] = {}
    for url, task_id in found.items():
        by_task.setdefault(task_id, []).append(url)
    return by_task


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def in_flight_needed(rate: float, round_trip: float, floor: int, cap: int = MAX_IN_FLIGHT) -> int:
    """How many pushes must be in flight for ``rate`` requests a second to go out.

    A push holds its worker ``round_trip`` seconds after the rate limiter lets it
    go, so ``rate * round_trip`` workers are busy at the full rate; 1.5 times
    that (``HEADROOM``) plus one covers the rest of a worker's cycle and keeps requests
    waiting in the limiter, so that the limiter, not the number in flight, is what
    sets the pace. Never below ``floor``
    (where an automatic drain starts), never above ``cap``.
    """
    cap = max(1, cap)
    floor = min(max(1, floor), cap)
    if rate <= 0 or round_trip <= 0 or not math.isfinite(rate * round_trip):
        return floor
    return max(floor, min(cap, math.ceil(HEADROOM * rate * round_trip) + 1))


@dataclass(frozen=True)
class SchedulerOptions:
    # Pushes in flight (CDN_PREHEAT_CONCURRENCY): exactly this many. None: automatic,
    # DEFAULT_CONCURRENCY to start with, then what the push rate and the observed
    # round trip need (in_flight_needed), at most MAX_IN_FLIGHT.
    concurrency: int | None = None
    lease: dt.timedelta = dt.timedelta(minutes=2)
    max_retries: int = 8  # per batch, for rate-limit and transient answers
    batch_size: int | None = None  # cap below the provider's own limit
    rate: float | None = None  # requests/s cap below the provider's own limit
    quota_utc_offset_hours: int | None = None  # override the provider's quota day
    # CDN_HOST: a refusal of this host is the configuration's fault (stop), of any
    # other host that host's URLs' (they are marked invalid, the rest goes on).
    cdn_host: str | None = None
    worker_id: str = field(default_factory=default_worker_id)


@dataclass
class DrainReport:
    """What one drain did. ``stopped_by`` is set when it ended before the queue did."""

    submitted: int = 0
    invalid: int = 0
    batches: int = 0
    requests: int = 0
    rate_limited: int = 0
    transient: int = 0
    reconciled: int = 0
    peak_in_flight: int = 0  # the most pushes (worker threads) this drain ran at once
    quota_exhausted: bool = False
    quota: Quota | None = None
    stopped_by: PreheatError | None = None

    @property
    def wasted_requests(self) -> int:
        return self.rate_limited + self.transient

    def add(self, other: DrainReport) -> None:
        """Sum another drain's counters into this report (a run drains several times)."""
        self.submitted += other.submitted
        self.invalid += other.invalid
        self.batches += other.batches
        self.requests += other.requests
        self.rate_limited += other.rate_limited
        self.transient += other.transient
        self.reconciled += other.reconciled
        self.peak_in_flight = max(self.peak_in_flight, other.peak_in_flight)
        self.quota_exhausted = self.quota_exhausted or other.quota_exhausted
        self.quota = other.quota or self.quota
        self.stopped_by = other.stopped_by or self.stopped_by


class Intake(Protocol):
    """URLs still being queued while a drain runs (a catalog expanded as it is pushed).

    With an intake, a drain does not end when the queue is empty for a moment,
    only once the intake is closed and the queue is empty; and it pushes only
    while :meth:`may_push` says the day's quota covers everything still to come
    (else it waits for the queue to be complete, so that the quota goes to every
    video's head first).
    """

    def more_coming(self) -> bool:
        """URLs may still be queued."""
        ...

    def wait(self, timeout: float) -> None:
        """Until more URLs were queued or the intake closed (at most ``timeout``)."""
        ...

    def may_push(self, remaining: int | None, claimed: int) -> bool:
        """Whether ``remaining`` quota covers what is queued and to come (``claimed`` taken)."""
        ...


# How long a drain with an intake waits for more URLs before it looks again.
INTAKE_WAIT_SECONDS = 0.2


class _Stop(Exception):
    """Internal: end this worker's loop."""


class Scheduler:
    """Drains one provider/area queue from a shared ledger."""

    def __init__(
        self,
        ledger: Ledger,
        provider: Provider,
        options: SchedulerOptions | None = None,
        *,
        on_submitted: Callable[[int], None] | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.ledger = ledger
        self.provider = provider
        self.options = options or SchedulerOptions()
        self._on_submitted = on_submitted or (lambda n: None)
        self._clock = clock
        limits = provider.limits
        # The provider paces each API on its own budget; CDN_PREHEAT_RATE caps them all.
        if self.options.rate:
            provider.pacing.set_cap(self.options.rate)
        self._batch_size = min(limits.batch_size, self.options.batch_size or limits.batch_size)
        offset = self.options.quota_utc_offset_hours
        self._utc_offset = offset if offset is not None else limits.quota_utc_offset_hours
        self._lock = threading.Lock()
        # ``_stop`` ends this drain's loops; ``_cancel`` is the caller's event. They
        # are separate so that a drain ending on its own (quota spent, provider
        # error) does not look to the caller like a request to stop everything.
        self._stop = threading.Event()
        self._cancel = threading.Event()
        self._report = DrainReport()
        self._limited = True
        self._held: dict[str, Claim] = {}  # claims in work, by id: their leases are renewed
        self._video_id: str | None = None  # this drain pushes only this video's URLs
        self._intake: Intake | None = None  # URLs still being queued during this drain
        self._claimed = 0  # URLs claimed by this drain
        # Pushes in flight (worker threads): how many run, how many are wanted, and
        # the round trips (answered pushes, rate-limit waits left out) that decide it.
        fixed = self.options.concurrency
        if fixed is not None:
            self._floor = self._cap = max(1, fixed)
        else:
            self._floor = DEFAULT_CONCURRENCY
            follows = provider.features.in_flight_follows_rate
            self._cap = MAX_IN_FLIGHT if follows else DEFAULT_CONCURRENCY
        self._live = 0
        self._wanted = self._floor
        self._round_trips: deque[float] = deque(maxlen=ROUND_TRIP_SAMPLES)
        self._workers: list[Future[None]] = []
        self._pool: ThreadPoolExecutor | None = None

    # Public ---------------------------------------------------------------
    def drain(
        self,
        stop: threading.Event | None = None,
        *,
        video_id: str | None = None,
        intake: Intake | None = None,
    ) -> DrainReport:
        """Push pending URLs until the queue is empty, the quota is spent or ``stop`` is set.

        ``video_id``: push only that video's URLs (the rest stay queued).
        ``intake``: URLs are still being queued; the queue ends when it closes.
        """
        # The caller's stop is bound to this drain (stopping.bound): a signal sets it
        # too, and every wait of the drain's threads wakes on it, the waits it is not
        # handed to included (the rate limiter's, a provider's page retries, the
        # ledger's reconnect backoff).
        with stopping.bound(stop) as cancel:
            return self._drain(cancel, video_id, intake)

    def _drain(
        self, stop: threading.Event, video_id: str | None, intake: Intake | None
    ) -> DrainReport:
        self._video_id = video_id
        self._intake = intake
        self._claimed = 0
        self._stop = threading.Event()
        self._cancel = stop
        self._report = DrainReport()
        self._refresh_quota()
        heartbeat = threading.Event()
        beating = threading.Thread(
            target=self._heartbeat, args=(heartbeat,), name="lease-heartbeat", daemon=True
        )
        beating.start()
        try:
            self.reconcile_expired()
            self._live, self._wanted, self._workers = 0, self._floor, []
            self._round_trips.clear()
            with ThreadPoolExecutor(self._cap, thread_name_prefix="push") as pool:
                self._pool = pool
                self._spawn()
                self._join_workers()
        finally:
            self._pool = None
            heartbeat.set()
            beating.join()
        return self._report

    # Pushes in flight -------------------------------------------------------
    def _spawn(self) -> None:
        """Start workers until ``_wanted`` run (a stopping drain starts none)."""
        with self._lock:
            if self._pool is None or self._stop.is_set() or self._cancel.is_set():
                return
            for _ in range(self._wanted - self._live):
                self._live += 1
                self._workers.append(self._pool.submit(self._work))
            self._report.peak_in_flight = max(self._report.peak_in_flight, self._live)

    def _join_workers(self) -> None:
        """Wait for every worker, those started while waiting too."""
        while True:
            with self._lock:
                running = [future for future in self._workers if not future.done()]
            if not running:
                break
            wait(running)
        for future in self._workers:
            future.result()

    def _retire(self) -> bool:
        """Whether this worker is one more than needed (and so leaves, counted out)."""
        with self._lock:
            if self._live > self._wanted:
                self._live -= 1
                return True
            return False

    def _observed(self, seconds: float) -> None:
        """A push was answered ``seconds`` after the rate limiter let it go: resize the pool.

        The median of the latest round trips sizes it (in_flight_needed) once every
        starting worker has pushed once, so a cold first request (connections, the
        SDK's first call) does not decide alone. Only the API's time counts: time a
        worker spends on the ledger is not spent in parallel (one connection, or one
        database, serves them all), so more workers would only queue there, and
        their wait would ask for more workers still.
        """
        with self._lock:
            self._round_trips.append(seconds)
            if len(self._round_trips) < self._floor:
                return
            typical = statistics.median(self._round_trips)
            wanted = in_flight_needed(self._request_rate(), typical, self._floor, self._cap)
            if wanted == self._wanted:
                return
            log.info(
                "%s: %d pushes in flight (%.0f requests/s, round trip median %.0f ms)",
                self.provider.name,
                wanted,
                self._request_rate(),
                typical * 1000,
            )
            self._wanted = wanted
        self._spawn()

    def _request_rate(self) -> float:
        """Push requests a second this process may send: the vendor's, capped, shared."""
        rate = self.provider.limits.requests_per_second
        if self.options.rate:
            rate = min(rate, self.options.rate)
        return rate / max(1, self.provider.pacing.share)

    def reconcile_expired(self) -> int:
        """Settle batches left reserved by a worker that died; returns URLs found submitted.

        Each expired claim is first taken over in the ledger (one atomic step), so
        of several workers restarting together each recovers a dead batch once and
        returns its quota reservation once.
        """
        found_total = 0
        for stale in self.ledger.expired_claims(
            self.provider.name, self.provider.area, self._now()
        ):
            if stopping.current().is_set():
                break  # stopping: the rest are taken over by the next drain
            claim = self.ledger.renew_lease(
                stale, self._now(), self.options.lease, worker=self.options.worker_id
            )
            if claim is None:
                continue  # another worker is recovering it
            self._hold(claim)
            try:
                found_total += self._recover(claim)
            finally:
                self._unhold(claim)
        with self._lock:
            self._report.reconciled += found_total
        return found_total

    def _recover(self, claim: Claim) -> int:
        """Reconcile one taken-over claim; the URLs found submitted."""
        try:
            found = self._find_submitted(claim, claim.urls)
        except (RateLimited, Transient) as exc:
            # Still unanswered after the retries: its lease runs out again, and a
            # later drain (this worker's or another's) takes it over again.
            log.warning("could not reconcile %s yet (%s); will try again", claim.claim_id, exc)
            return 0
        except ProviderError as exc:
            # Older than the vendor keeps tasks, or the query refused: nobody can tell
            # whether the lost request arrived. A second push costs quota; a claim that
            # can never be settled would stop every later drain.
            log.warning(
                "cannot reconcile %s (%s); its %d URLs go back to the queue",
                claim.claim_id,
                exc,
                len(claim.urls),
            )
            found = {}
        rest = [url for url in claim.urls if url not in found]
        # The dead worker never settled its reservation; the provider's own
        # count (synced at the next refresh) already holds what arrived. One
        # ledger step: killed half-way, nothing is released without its share.
        self.ledger.settle_claim(
            claim,
            self._now(),
            self.quota_key(claim.claimed_at)[2],
            len(claim.urls),
            0,
            submitted=_by_task(found),
            released=rest,
        )
        recorded = len(found)
        log.info(
            "reconciled %s: %d of %d URLs had reached the provider",
            claim.claim_id,
            len(found),
            len(claim.urls),
        )
        return recorded

    # Leases -----------------------------------------------------------------
    def _hold(self, claim: Claim) -> None:
        with self._lock:
            self._held[claim.claim_id] = claim

    def _unhold(self, claim: Claim) -> None:
        with self._lock:
            self._held.pop(claim.claim_id, None)

    def _heartbeat(self, done: threading.Event) -> None:
        """Renew the lease of every claim this drain holds, every third of a lease.

        A call that outlives the lease (a slow API, retries, a rate-limit pause)
        then never lets another worker take its batch for a dead one's and push
        it a second time.
        """
        with stopping.bound(self._cancel):
            self._renew_leases(done)

    def _renew_leases(self, done: threading.Event) -> None:
        interval = max(0.05, self.options.lease.total_seconds() / 3)
        while not done.wait(interval):
            with self._lock:
                held = list(self._held.values())
            for claim in held:
                try:
                    renewed = self.ledger.renew_lease(claim, self._now(), self.options.lease)
                except PreheatError as exc:
                    log.warning("could not renew the lease of %s: %s", claim.claim_id, exc)
                    continue
                with self._lock:
                    if claim.claim_id in self._held:
                        if renewed is None:
                            del self._held[claim.claim_id]  # settled meanwhile
                        else:
                            self._held[claim.claim_id] = renewed

    # Worker loop ----------------------------------------------------------
    def _work(self) -> None:
        with stopping.bound(self._cancel):  # this thread works for the drain's run
            self._work_bound()

    def _work_bound(self) -> None:
        retired = False
        try:
            while not (self._stop.is_set() or self._cancel.is_set()):
                if self._retire():
                    retired = True
                    return
                intake = self._intake
                if intake is not None and intake.more_coming() and not self._may_push(intake):
                    intake.wait(INTAKE_WAIT_SECONDS)  # the quota waits for the whole queue
                    continue
                claim, granted = self._claim()
                if granted == 0:
                    self._finish(quota_exhausted=True)
                    return
                if claim is None:
                    if intake is not None and intake.more_coming():
                        intake.wait(INTAKE_WAIT_SECONDS)
                        continue
                    return
                with self._lock:
                    self._claimed += len(claim.urls)
                self._hold(claim)
                try:
                    self._push(claim)
                finally:
                    self._unhold(claim)
        except _Stop:
            return
        except PreheatError as exc:
            self._finish(error=exc)
        finally:
            if not retired:
                with self._lock:
                    self._live -= 1

    def _may_push(self, intake: Intake) -> bool:
        """While URLs are still queued: whether the day's quota covers them all."""
        remaining = None
        if self._limited:
            book = self.ledger.quota_day(*self.quota_key())
            remaining = None if book is None else book.remaining
        with self._lock:
            claimed = self._claimed
        return intake.may_push(remaining, claimed)

    def _push(self, claim: Claim) -> None:
        """Push a claim; a refused request is split until its refused URLs stand alone.

        Each piece settles its own share of the claim's quota reservation, so the
        pieces together settle exactly ``len(claim.urls)``.
        """
        pieces: list[Sequence[str]] = [claim.urls]
        try:
            while pieces:
                piece = pieces.pop()
                # Last in, first out: the first part of a split piece goes first.
                pieces.extend(reversed(self._push_piece(claim, piece)))
        except _Stop:
            # Stopping: the pieces not yet tried go back to the queue, quota returned.
            for piece in pieces:
                self._abandon(claim, piece)
            raise

    def _push_piece(self, claim: Claim, urls: Sequence[str]) -> list[Sequence[str]]:
        """Push ``urls`` of ``claim``; the pieces still to push when the request was refused."""
        attempt = 0
        while urls:
            attempt += 1
            if self._cancel.is_set():
                self._abandon(claim, urls)
                raise _Stop
            with self._lock:
                self._report.requests += 1
            sent, paced = time.monotonic(), paced_seconds()
            try:
                result = self.provider.submit(urls)
            except RateLimited as exc:
                with self._lock:
                    self._report.rate_limited += 1
                self.provider.pacing.penalise(
                    self.provider.submit_api, exc.retry_after or backoff_delay(attempt)
                )
                self._give_up_after(attempt, claim, urls, exc)
                continue
            except Transient as exc:
                urls = self._after_transient(claim, urls, exc, attempt)
                continue
            except InvalidUrls as exc:
                if exc.task_id is not None:
                    accepted = [u for u in urls if u not in exc.invalid]
                    self._record(
                        claim, SubmitResult(exc.task_id, tuple(accepted), exc.invalid), len(urls)
                    )
                    return []
                refused = [u for u in urls if u in exc.invalid]
                urls = [u for u in urls if u not in exc.invalid]
                self._end(claim, len(refused), invalid=exc.invalid)
                continue
            except BatchRefused as exc:
                return self._split(claim, urls, exc, per_host=exc.per_host)
            except DomainError as exc:
                return self._split_hosts_or_stop(claim, urls, exc)
            except BatchTooLarge as exc:
                return self._back_off_batch(claim, urls, exc)
            except QuotaExhausted:
                self._abandon(claim, urls)
                self.ledger.exhaust_quota(*self.quota_key())
                self._finish(quota_exhausted=True)
                raise _Stop from None
            except ProviderError as exc:
                self._abandon(claim, urls)
                self._finish(error=exc)
                raise _Stop from None
            self._observed((time.monotonic() - sent) - (paced_seconds() - paced))
            self._record(claim, result, len(urls))
            return []
        return []

    def _after_transient(
        self, claim: Claim, urls: Sequence[str], exc: Transient, attempt: int
    ) -> list[str]:
        """A push without an answer: what did not reach the provider, to push again."""
        with self._lock:
            self._report.transient += 1
        if exc.timed_out:
            # Unanswered within the deadline: the request may still be on its way at
            # the provider. Give it one more deadline to take effect (the heartbeat
            # keeps the lease) before asking whether it did.
            self._cancel.wait(self.provider.call_timeout)
        # The request may have arrived before the answer was lost: ask first.
        rest = self._unsubmitted(claim, urls)
        self._give_up_after(attempt, claim, rest, exc)
        if self._cancel.wait(backoff_delay(attempt)):
            self._abandon(claim, rest)
            raise _Stop from None
        return rest

    def _split_hosts_or_stop(
        self, claim: Claim, urls: Sequence[str], exc: DomainError
    ) -> list[Sequence[str]]:
        """A host refused: per host when the batch has several, else the account is wrong."""
        by_host = _by_host(urls)
        if len(by_host) > 1:
            # Perhaps only some of these hosts are not the account's: ask per host.
            return by_host
        if urlsplit(urls[0]).netloc.lower() == (self.options.cdn_host or "").lower():
            # CDN_HOST itself is refused: the configuration is wrong, not the URLs.
            self._abandon(claim, urls)
            self._finish(error=exc)
            raise _Stop from exc
        return self._split(claim, urls, BatchRefused(str(exc), code=exc.code), per_host=True)

    def _split(
        self, claim: Claim, urls: Sequence[str], exc: BatchRefused, *, per_host: bool
    ) -> list[Sequence[str]]:
        """Pieces of a refused request; a piece that cannot be split further is invalid.

        A refusal about a host splits by host first (one request per host tells
        which hosts are refused, and every URL of a refused host is); anything
        else is bisected until the refused URLs stand alone.
        """
        if per_host:
            by_host = _by_host(urls)
            if len(by_host) > 1:
                return by_host
        if per_host or len(urls) == 1:
            reason = str(exc)
            log.warning("%d URL(s) refused by the provider: %s", len(urls), reason)
            self._end(claim, len(urls), invalid=dict.fromkeys(urls, reason))
            return []
        half = len(urls) // 2
        return [urls[:half], urls[half:]]

    # Steps ----------------------------------------------------------------
    def _record(self, claim: Claim, result: SubmitResult, reserved: int) -> None:
        # One ledger step: killed between separate ones, the reservation would
        # stay in flight for the rest of the day with no claim to reconcile.
        self._end(
            claim,
            reserved,
            len(result.accepted),
            submitted={result.task_id: result.accepted},
            invalid=result.invalid,
        )
        if result.quota is not None:
            self._sync_quota(result.quota)
        with self._lock:
            self._report.submitted += len(result.accepted)
            self._report.batches += 1
        self._on_submitted(len(result.accepted))  # the invalid ones counted by _end
        log.info(
            "batch %s: %d URLs submitted as task %s",
            claim.claim_id,
            len(result.accepted),
            result.task_id,
        )

    def _unsubmitted(self, claim: Claim, urls: Sequence[str]) -> list[str]:
        """What of ``urls``, one request sent without an answer, did not reach the provider."""
        found = self._find_submitted(claim, urls, one_request=True)
        if found:
            arrived = len(found)
            self._end(claim, arrived, arrived, submitted=_by_task(found))
            with self._lock:
                self._report.submitted += arrived
                self._report.reconciled += arrived
            self._on_submitted(arrived)
        return [url for url in urls if url not in found]

    def _find_submitted(
        self, claim: Claim, urls: Sequence[str], *, one_request: bool = False
    ) -> dict[str, str]:
        """The URLs of ``urls`` that this claim's lost request delivered, by task id.

        ``one_request``: ``urls`` are one submit call's (``Provider.find_request``);
        else, as after a crash, they may be several calls', or none sent.

        The provider's task list also holds earlier pushes of the same URLs (an
        attempt that ended ``fail``, a preheat that expired); taking one of those
        for this claim's push would close the URL without pushing it again. Those
        tasks are in the ledger already, recorded with the URL's push. A task id
        the ledger knows only from other URLs is not one: Alibaba merges the
        pushes of one second under one PushTaskId, so another batch's answer may
        have recorded the id of this claim's lost push first.
        """
        since = claim.claimed_at - RECONCILE_MARGIN
        find = self.provider.find_request if one_request else self.provider.find_submitted
        found = self._retrying(lambda: find(urls, since))
        earlier = self.ledger.earlier_pushes(self.provider.name, claim.area, found)
        return {url: task_id for url, task_id in found.items() if url not in earlier}

    def _end(
        self,
        claim: Claim,
        reserved: int,
        used: int = 0,
        *,
        submitted: Mapping[str, Sequence[str]] | None = None,
        invalid: Mapping[str, str] | None = None,
        released: Sequence[str] = (),
        error: str | None = None,
        count_attempt: bool = False,
    ) -> None:
        """End URLs of the claim and settle their share of the reservation, in one ledger step.

        Never a release or a refusal followed by a separate settle: killed between
        the two, the share would stay in flight for the rest of the day.
        """
        day = self.quota_key()[2] if self._limited and reserved else None
        self.ledger.settle_claim(
            claim,
            self._now(),
            day,
            reserved,
            used,
            submitted=submitted,
            invalid=invalid,
            released=released,
            error=error,
            count_attempt=count_attempt,
        )
        if invalid:
            with self._lock:
                self._report.invalid += len(invalid)
            self._on_submitted(len(invalid))

    def _back_off_batch(
        self, claim: Claim, urls: Sequence[str], exc: BatchTooLarge
    ) -> list[Sequence[str]]:
        """Halve the refused piece (and later claims); a single URL too large stops the run.

        Judged by the refused piece itself: several threads refuse batches claimed
        at different sizes, and one of them may have shrunk the shared size already.
        """
        if len(urls) == 1:
            self._abandon(claim, urls)
            self._finish(error=exc)
            raise _Stop from exc
        half = len(urls) // 2
        with self._lock:
            self._batch_size = max(1, min(self._batch_size, half))
        log.warning(
            "provider refused a batch of %d URLs; batches are now %d", len(urls), self._batch_size
        )
        return [urls[:half], urls[half:]]

    def _give_up_after(
        self, attempt: int, claim: Claim, urls: Sequence[str], exc: ProviderError
    ) -> None:
        if attempt < self.options.max_retries or not urls:
            return
        self._end(claim, len(urls), released=urls, error=str(exc), count_attempt=True)
        self._finish(error=exc)
        raise _Stop from exc

    def _abandon(self, claim: Claim, urls: Sequence[str]) -> None:
        self._end(claim, len(urls), released=urls)

    def _finish(self, *, quota_exhausted: bool = False, error: PreheatError | None = None) -> None:
        with self._lock:
            if quota_exhausted:
                self._report.quota_exhausted = True
            if error is not None and self._report.stopped_by is None:
                self._report.stopped_by = error
        self._stop.set()

    # Quota ----------------------------------------------------------------
    def _refresh_quota(self) -> None:
        # Read the ledger's settle count first: the provider's answer is current
        # only if no batch settles while we wait for it (see Ledger.sync_quota).
        book = self.ledger.quota_day(*self.quota_key())
        quota = self._retrying(self.provider.quota)
        self._sync_quota(quota, settles_seen=book.settles if book else 0)
        if quota.batch:
            self._batch_size = min(self._batch_size, quota.batch)

    def _sync_quota(self, quota: Quota, *, settles_seen: int | None = None) -> None:
        with self._lock:
            self._report.quota = quota
            self._limited = not quota.unlimited
        if quota.total is not None and quota.available is not None:
            self.ledger.sync_quota(
                *self.quota_key(),
                quota.total,
                max(0, quota.total - quota.available),
                settles_seen=settles_seen,
            )

    def _claim(self) -> tuple[Claim | None, int]:
        """The next batch and the quota granted for it (0: the quota is spent).

        Quota and URLs are taken in one ledger step: a worker killed between a
        separate reservation and claim would leave quota reserved that no lease
        ever gives back, and the day's quota would shrink for good.
        """
        if not self._limited:
            return self._claim_with_quota(None)
        claim, granted = self._claim_with_quota(self.quota_key())
        for _ in range(SETTLE_WAITS):
            if granted or self._stop.is_set() or self._cancel.is_set():
                break
            # Our count may be stale (another day began) or inflated (a snapshot
            # that already held a batch still in flight): ask the provider before
            # calling it a day. Its answer only counts once nothing is in flight,
            # so while other batches are on their way, wait for them to settle.
            self._refresh_quota()
            claim, granted = self._claim_with_quota(self.quota_key())
            book = self.ledger.quota_day(*self.quota_key())
            if granted or book is None or book.inflight == 0:
                break
            self._cancel.wait(SETTLE_WAIT_SECONDS)
        return claim, granted

    def _claim_with_quota(self, key: tuple[str, str, str] | None) -> tuple[Claim | None, int]:
        """Claim with a quota reservation, or (``key`` None: no daily quota) without."""
        now, worker, lease = self._now(), self.options.worker_id, self.options.lease
        name, area = self.provider.name, self.provider.area
        if key is None:
            claim = self.ledger.claim(
                name, area, self._batch_size, worker, now, lease, video_id=self._video_id
            )
            return claim, self._batch_size
        return self.ledger.claim_with_quota(
            name, area, key[2], self._batch_size, worker, now, lease, video_id=self._video_id
        )

    def quota_key(self, when: dt.datetime | None = None) -> tuple[str, str, str]:
        day = quota_day(when or self._now(), self._utc_offset)
        return self.provider.name, self.provider.area, day

    # Helpers --------------------------------------------------------------
    def _now(self) -> dt.datetime:
        return self._clock()

    def _retrying(self, call: Callable[[], T]) -> T:
        """Call a read-only provider method, retrying rate-limit and transient answers."""
        # Its backoffs wake on the run this thread works for (stopping.current: the
        # drain's stop, bound in drain() and in each of its threads) and on a signal.
        return call_with_retries(
            call,
            attempts=self.options.max_retries,
            on_retry=self._count_retry,
            stop=stopping.current(),
        )

    def _count_retry(self, exc: ProviderError) -> None:
        with self._lock:
            if isinstance(exc, RateLimited):
                self._report.rate_limited += 1
            else:
                self._report.transient += 1
