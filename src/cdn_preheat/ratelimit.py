"""Pacing: a thread-safe sliding-window limiter, one per vendor API, and a backoff schedule.

Every vendor limits each API on its own (Tencent Cloud: 20 calls a second for
each of PushUrlsCache, DescribePushTasks, DescribePushQuota...; Alibaba Cloud:
50/30/5 a second for PushObjectCache, DescribeRefreshTaskById,
DescribeRefreshTasks; Qiniu: 240 URLs and directories a second over prefetch
and refresh together). A provider declares those budgets and paces every call
on the budget of its API (:class:`Pacing`), so that status polling and crash
recovery never eat into the push budget and never draw rate-limit answers of
their own. Several processes on one account divide every budget by the number
of live workers (:class:`RateShare`, heartbeats in the ledger).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar, cast

from tenacity import RetryCallState

from cdn_preheat import stopping
from cdn_preheat.clock import utcnow
from cdn_preheat.errors import ProviderError, RateLimited, Transient
from cdn_preheat.retrying import backoff_delay, jittered, retry_call

if TYPE_CHECKING:
    import datetime as dt

    from cdn_preheat.ledger.base import Ledger

T = TypeVar("T")
log = logging.getLogger(__name__)

MAX_MARGIN = 0.25  # how far penalise() widens the window
# Of a budget that one process leads for the account (its status API, polled by one
# worker at a time for everyone: a ledger turn), each other process keeps this part
# of an even share for its own rare calls (a lost push answer looked up); the
# leader takes the rest.
FOLLOWER_PART = 0.25
# How long a process waits after it took the lead before it calls at the leader's
# rate: the former leader's calls of its last (widened) second are still in the
# vendor's window.
LEAD_SETTLE = 1.0 + MAX_MARGIN
# Calls go out at least this part of an even spacing apart (``SPREAD / rate``
# seconds for a budget of calls). Without it, a window's calls were released at
# one instant (the first ``rate`` of a run, and then every window after it, whose
# calls freed up together), and so arrived together: a busy API answers such a
# burst late, which the limiter must count as a late arrival (see ``acquire``), so
# every window started that much later. Four workers on one account lost 10 to 15 %
# of its rate that way (bench/push.py --workers). Half an even spacing keeps most
# of what a first burst wins: the run's first window takes half a second instead
# of none, and the window rule, not the spacing, sets the pace after it.
SPREAD = 0.5


class RateLimiter:
    """At most ``rate`` calls in any one-second window, across all threads.

    No vendor documents how it counts "N a second"; a sliding second is the
    strictest plausible reading (the clock's seconds and a full token bucket
    of ``rate`` accept whatever it accepts: ``sandbox.core.RateCounting``, and
    the sandbox emulators count in it by default), so this keeps a log of the
    last ``rate`` release times and lets a call go when the call ``rate``
    places before it went out more than ``1 + margin`` seconds ago. Compared
    with spacing calls exactly ``1/rate`` apart, which it replaced:

    - the window is checked against when calls *actually* went out (a thread
      that woke late pushes the calls a second after it back), so a late
      wake-up can no longer put ``rate + 1`` requests into one of the
      provider's windows and earn a rate-limit answer;
    - ``margin`` (4 % by default) absorbs what happens between release and
      arrival (request signing, the network, the server's own scheduling);
      every :meth:`penalise` widens it by 2 points, up to 25 %, so a link
      with more jitter than that stops earning rate-limit answers;
    - the first ``rate`` calls need not wait a window, which wins back on a
      run of any length what the margin costs in steady state; they (and the
      calls of every later window) are spread :data:`SPREAD` of an even
      spacing apart, so that a window's calls never arrive at one instant.

    A fractional ``rate`` (``2.5``) allows ``floor(rate)`` calls per
    ``floor(rate) / rate`` seconds.

    ``clock`` and ``sleep`` (returns True when the wait was cut short by a
    stop) are the machine's monotonic clock and :func:`stopping.sleep` (looked
    up at each wait); tests drive the limiter with fakes.
    """

    def __init__(
        self,
        rate: float,
        *,
        margin: float = 0.04,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], bool] | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        if margin < 0:
            raise ValueError("margin must not be negative")
        self._margin = margin
        self._clock = clock
        self._sleep = sleep
        # Calls of the last two windows in the order they were scheduled, each
        # [release time, sequence, units]; the time is corrected later to when
        # the call really went out (see acquire).
        self._log: deque[list[float]] = deque()
        self._sequence = 0
        self._hold_until = 0.0
        self._fastest = float("inf")  # the shortest round trip seen (see acquire)
        self._answered = 0
        self._lock = threading.Lock()
        self._set(rate)

    @property
    def rate(self) -> float:
        with self._lock:
            return self._rate

    def set_rate(self, rate: float) -> None:
        """Change the rate in place; what already went out still counts in its window.

        Lowering it therefore never lets the next second hold more than the
        new rate: the calls of the last second are still in the log.
        """
        if rate <= 0:
            raise ValueError("rate must be positive")
        with self._lock:
            self._set(rate)

    def _set(self, rate: float) -> None:
        self._rate = rate
        self._burst = max(1, int(rate))
        self._period = self._burst / rate
        self._window = self._period * (1.0 + self._margin)

    def acquire(self, units: int = 1) -> Callable[[], None]:
        """Wait until ``units`` more calls (or URLs, for a budget counted in them) fit.

        Returns ``done``, to call when the request has been answered (or has
        failed): a request that took longer than the fastest one seen may have
        left the client late (a busy machine, a thread waiting for the GIL), so
        its place in the window moves to ``answered - fastest round trip``
        (``answered`` for the first ``rate`` calls, before any trip is known to
        be typical). A late send thus pushes the calls a window after it back
        instead of putting one too many into the vendor's window.
        """
        units = min(max(1, units), self._burst)
        with self._lock:
            self._sequence += 1
            slot = [0.0, float(self._sequence), float(units)]
            now = self._clock()
            # Entries two windows old can no longer hold anyone back.
            while self._log and self._log[0][0] < now - 2 * self._window - 1.0:
                self._log.popleft()
            slot[0] = self._earliest(now, slot)
            self._log.append(slot)
        self._wait(slot)
        return self._went(slot)

    def _wait(self, slot: list[float]) -> None:
        """Sleep until ``slot`` may go; a stop ends the wait."""
        while True:
            delay = slot[0] - self._clock()
            if delay > 0 and (self._sleep or stopping.sleep)(delay):
                return  # stopping (Ctrl-C): no wait; the caller checks the stop before calling
            with self._lock:
                # Calls answered while we slept may have moved later (see done).
                woke = self._clock()
                start = self._earliest(woke, slot)
                if start <= woke:
                    slot[0] = max(slot[0], woke)
                    return
                slot[0] = start

    def _went(self, slot: list[float]) -> Callable[[], None]:
        """The call of ``slot`` went out (``slot[0]``): its ``done``."""
        released = slot[0]

        def done() -> None:
            answered = self._clock()
            with self._lock:
                # The window is widened by the margin; a call placed ``slack`` before
                # its latest possible arrival still has a full vendor second after it.
                slack = self._window - self._period
                if self._answered < self._burst:
                    # Cold start (first connections, the SDK's first request): no
                    # round trip is known to be typical yet, so count the call as
                    # arriving when its answer did, which it cannot be later than.
                    slot[0] = max(slot[0], answered - slack)
                else:
                    slot[0] = max(slot[0], answered - self._fastest - slack)
                self._answered += 1
                self._fastest = min(self._fastest, answered - released)

        return done

    def _earliest(self, now: float, slot: list[float]) -> float:
        """When ``slot`` fits in the window behind every call scheduled before it."""
        start = max(now, self._hold_until)
        units = int(slot[2])
        prior: list[float] = []
        for entry in self._log:
            if entry[1] < slot[1]:
                prior.extend([entry[0]] * int(entry[2]))
        prior.sort()
        over = len(prior) + units - self._burst
        if over > 0:
            start = max(start, prior[over - 1] + self._window)
        if prior:
            # Spread: this call's share of an even spacing after the latest call.
            start = max(start, prior[-1] + SPREAD * units * self._period / self._burst)
        return start

    def penalise(self, seconds: float) -> None:
        """Hold every caller back for ``seconds`` (the provider said slow down)."""
        with self._lock:
            self._hold_until = max(self._hold_until, self._clock() + seconds)
            self._margin = min(self._margin + 0.02, MAX_MARGIN)
            self._window = self._period * (1.0 + self._margin)


@dataclass(frozen=True)
class Budget:
    """One vendor rate limit: ``per_second`` calls (or units) in any one-second window.

    ``units_per_call`` is what one full request spends of a budget counted in
    units (Qiniu counts URLs): a requests-a-second cap (``CDN_PREHEAT_RATE``)
    becomes ``cap * units_per_call`` units a second. ``source`` is the vendor
    document that states the limit.
    """

    per_second: float
    units_per_call: int = 1
    source: str = ""


class Pacing:
    """One :class:`RateLimiter` per budget of one account.

    ``apis`` maps an API name to the budget it draws on (by default the
    budget of the same name; Qiniu's prefetch and refresh share one). Each
    budget's rate is its vendor limit, capped at ``cap`` requests a second
    (``CDN_PREHEAT_RATE``), divided by ``share`` (the live workers on the
    account, see :class:`RateShare`).
    """

    def __init__(
        self,
        budgets: Mapping[str, Budget],
        apis: Mapping[str, str] | None = None,
        *,
        cap: float | None = None,
    ) -> None:
        if not budgets:
            raise ValueError("a pacing needs at least one budget")
        self._budgets = dict(budgets)
        self._apis = dict(apis or {})
        for api, budget in self._apis.items():
            if budget not in self._budgets:
                raise ValueError(f"{api} draws on an unknown budget {budget!r}")
        self._cap = cap
        self._share = 1
        self._leads: dict[str, bool] = {}  # budget -> this process leads it (or follows)
        self._lock = threading.Lock()
        self._limiters = {name: RateLimiter(self._rate(name)) for name in self._budgets}

    def budget_of(self, api: str) -> str:
        """The budget ``api`` draws on."""
        name = self._apis.get(api, api)
        if name not in self._budgets:
            raise KeyError(f"no rate budget for the API {api!r}")
        return name

    def limiter(self, api: str) -> RateLimiter:
        return self._limiters[self.budget_of(api)]

    def rate(self, api: str) -> float:
        """What ``api`` may call a second now (units a second for unit budgets)."""
        return self.limiter(api).rate

    def acquire(self, api: str, units: int = 1) -> Callable[[], None]:
        """Wait until one call of ``api`` (spending ``units`` of its budget) may go.

        Call the returned ``done`` when the call has been answered.
        """
        return self.limiter(api).acquire(units)

    def penalise(self, api: str, seconds: float) -> None:
        self.limiter(api).penalise(seconds)

    @property
    def share(self) -> int:
        with self._lock:
            return self._share

    def set_cap(self, cap: float | None) -> None:
        """Cap every budget at ``cap`` requests a second (None: the vendor's limits)."""
        with self._lock:
            self._cap = cap
            self._apply()

    def set_share(self, workers: int) -> None:
        """Divide every budget by ``workers`` processes pacing on the same account."""
        with self._lock:
            self._share = max(1, workers)
            self._apply()

    def set_lead(self, api: str, leading: bool | None, *, apart_from: str | None = None) -> None:
        """Whether this process leads ``api``'s budget for the account's workers.

        ``apart_from``: only where ``api`` has a budget of its own, not the one
        this API draws on (a status API that shares the pushes' budget is never led).

        ``True``: it is the one that calls ``api`` for everyone (the tracker
        holding the poll turn), and takes all of the budget but the followers'
        parts; ``False``: another process leads, this one keeps
        :data:`FOLLOWER_PART` of an even share; ``None``: an even share, as
        every other budget. Without a lead, the one poller of several workers
        paced its status calls at a worker's share and fell ever further behind
        the pushes of all of them.
        """
        with self._lock:
            name = self.budget_of(api)
            if apart_from is not None and self.budget_of(apart_from) == name:
                return
            if leading is None:
                self._leads.pop(name, None)
            else:
                self._leads[name] = leading
            self._limiters[name].set_rate(self._rate(name))

    def _apply(self) -> None:
        for name, limiter in self._limiters.items():
            limiter.set_rate(self._rate(name))

    def _rate(self, name: str) -> float:
        budget = self._budgets[name]
        rate = budget.per_second
        if self._cap is not None:
            rate = min(rate, self._cap * budget.units_per_call)
        leading = self._leads.get(name)
        if leading is None or self._share == 1:
            return rate / self._share
        follower = rate / self._share * FOLLOWER_PART
        return rate - (self._share - 1) * follower if leading else follower


class RateShare:
    """Divides an account's rate budgets among the processes that pace on it.

    Each process records a heartbeat for its ``scope`` (the provider: rate
    limits are per account) in the shared ledger every ``interval`` seconds
    and divides its budgets by the number of workers heard from within
    ``ttl``. A process that joins while others run waits until they have
    seen it and their last second of calls at the old rate has passed, so
    the account's windows never hold more than its limit; one that leaves
    (or dies, after ``ttl``) gives its share back. Without this, every worker
    paced at the account's full rate and N workers drew rate-limit answers
    on (N-1)/N of their calls.
    """

    def __init__(
        self,
        ledger: Ledger,
        scope: str,
        worker_id: str,
        pacing: Pacing,
        *,
        interval: float = 0.5,
        ttl: float = 5.0,
        settle: float = 1.0 + MAX_MARGIN,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.ledger = ledger
        self.scope = scope
        self.worker_id = worker_id
        self.pacing = pacing
        self.interval = interval
        self.ttl = ttl
        self.settle = settle  # how long a leaver's calls may still be in the window
        self._clock = clock or utcnow
        self._beat_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fewer_since: float | None = None
        self.workers = 1

    def start(self, stop: threading.Event | None = None) -> RateShare:
        """Join: beat, take the share, and wait until every other worker counts us.

        Every worker waits ``interval`` after joining and beats again before
        its first call, so workers that join within half an interval of each
        other (a fleet started together) count each other from their first
        call. A worker that joined earlier than that may be calling at a share
        that leaves us out: it notices us within ``interval``, and its calls at
        the old rate leave the vendor's window ``settle`` later, so we wait that.
        """
        joined = self._beat()
        mine = joined[self.worker_id]
        earlier = [
            when
            for worker, when in joined.items()
            if worker != self.worker_id and when < mine - _seconds(self.interval / 2)
        ]
        wait = self.interval + (self.settle if earlier else 0.0)
        # Beat while waiting, too: workers that join meanwhile lower our share.
        self._thread = threading.Thread(target=self._run, name="rate-share", daemon=True)
        self._thread.start()
        (stop or threading.Event()).wait(wait)
        self._beat()
        return self

    def stop(self) -> None:
        """Leave: stop beating and give the share back to the others."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.ledger.leave(self.scope, self.worker_id)
        except Exception:  # the ledger may be gone; the others wait out the ttl
            log.debug("could not leave the rate share", exc_info=True)

    def __enter__(self) -> RateShare:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._beat()
            except Exception:  # keep the last share; the next beat tries again
                log.warning("rate share heartbeat failed", exc_info=True)

    def _beat(self) -> dict[str, dt.datetime]:
        with self._beat_lock:
            return self._beat_locked()

    def _beat_locked(self) -> dict[str, dt.datetime]:
        joined = self.ledger.heartbeat(
            self.scope, self.worker_id, self._clock(), _seconds(self.ttl)
        )
        live = max(1, len(joined))
        now = time.monotonic()
        if live >= self.workers:
            # More workers: slow down at once (the joiner waits for us).
            self._fewer_since = None
        elif self._fewer_since is None:
            # Fewer: the leaver's last calls are still in the vendor's window for
            # up to a (widened) second; take its share only once they have left.
            self._fewer_since = now
            return joined
        elif now - self._fewer_since < self.settle:
            return joined
        if live != self.workers:
            log.info("%d workers share the %s rate limits", live, self.scope)
        self._fewer_since = None
        self.workers = live
        self.pacing.set_share(live)
        return joined


def _seconds(value: float) -> dt.timedelta:
    import datetime as dt

    return dt.timedelta(seconds=value)


def call_with_retries(
    call: Callable[[], T],
    limiter: RateLimiter | None = None,
    *,
    attempts: int,
    on_retry: Callable[[ProviderError], None] | None = None,
    stop: threading.Event | None = None,
) -> T:
    """Pace ``call`` and retry it on rate-limit and transient answers (a tenacity policy).

    Only for calls that are safe to repeat (queries, not submissions). Once
    ``stop`` (default :data:`stopping.STOP`, Ctrl-C) is set, the last answer is
    raised instead of waiting to retry, and a backoff under way ends at once.
    ``limiter`` None: the provider paces the call on its API's own budget
    (:class:`Pacing`) and has already held that budget back on a rate-limit
    answer, so a retry only waits for the budget. A transient answer waits a
    jittered backoff (:func:`retrying.jittered`) first.
    """

    def attempt() -> T:
        if limiter is not None:
            limiter.acquire()
        return call()

    def before_retry(exc: BaseException, attempt: int) -> None:
        error = cast("ProviderError", exc)
        if on_retry is not None:
            on_retry(error)
        if isinstance(error, RateLimited) and limiter is not None:
            limiter.penalise(error.retry_after or backoff_delay(attempt))

    return retry_call(
        attempt,
        attempts=attempts,
        retry_on=(RateLimited, Transient),
        wait=_provider_backoff,
        stop=stop,
        before_retry=before_retry,
    )


def _provider_backoff(state: RetryCallState) -> float:
    """No wait after a rate-limit answer (the budget holds back), a jittered one otherwise."""
    failure = state.outcome.exception() if state.outcome is not None else None
    return 0.0 if isinstance(failure, RateLimited) else float(_JITTER(state))


_JITTER = jittered()
