"""The provider interface every CDN implements.

A provider makes one API call per method (or one paginated series), maps the
vendor's answer into these types and the vendor's errors into
:mod:`cdn_preheat.errors`. It paces every call on the rate budget of its API
(:attr:`Provider.pacing`: vendors limit each API on its own), and holds that
budget back when the vendor answers "too fast". It does not retry: the
scheduler and the tracker do that, the same way for every vendor.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self

from cdn_preheat.errors import Unreconcilable
from cdn_preheat.ratelimit import Budget, Pacing
from cdn_preheat.retrying import backoff_delay

if TYPE_CHECKING:
    from cdn_preheat.config import Settings

_PACING_LOCK = threading.Lock()
_PACED = threading.local()


def paced_seconds() -> float:
    """Seconds the calling thread has spent waiting for rate budgets (``Provider._pace``).

    The scheduler reads it around a batch to tell the time its worker was held by
    the rate limit from the time the request and the ledger took (the round trip
    that decides how many requests must be in flight to reach the rate).
    """
    return float(getattr(_PACED, "seconds", 0.0))


class TaskState(StrEnum):
    """Where one URL of a provider task stands."""

    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"  # worth retrying
    INVALID = "invalid"  # the origin refused or lacks the file: not retried


@dataclass(frozen=True)
class Limits:
    """What the provider accepts; the scheduler never exceeds these.

    ``requests_per_second`` is the prefetch API's rate; every API has its own
    budget in :attr:`Provider.budgets`.
    """

    batch_size: int
    requests_per_second: float
    purge_batch_size: int
    purge_dir_batch_size: int
    # The quota day starts at midnight in this offset from UTC; None: no daily quota.
    quota_utc_offset_hours: int | None = 8
    # How long the provider keeps a task's results; an open task older than this
    # can no longer be answered, so it is closed and its URLs pushed again.
    # None: kept as long as cdn-preheat needs them.
    task_retention: dt.timedelta | None = None


@dataclass(frozen=True)
class Quota:
    """Prefetch quota of one area for the provider's current day.

    ``total``/``available`` are ``None`` when the provider has no daily quota.
    ``batch`` is the per-request URL limit the provider reports, if it does.
    """

    area: str
    total: int | None
    available: int | None
    batch: int | None = None

    @property
    def unlimited(self) -> bool:
        return self.total is None


@dataclass(frozen=True)
class SubmitResult:
    """A prefetch request the provider accepted.

    ``invalid`` holds URLs it refused inside an otherwise accepted request
    (Qiniu's ``invalidUrls``); ``quota`` is set when the answer reports it.
    """

    task_id: str
    accepted: tuple[str, ...]
    invalid: dict[str, str] = field(default_factory=dict)
    quota: Quota | None = None


@dataclass(frozen=True)
class TaskEntry:
    """One URL of one task, as the provider's task list reports it."""

    task_id: str
    url: str
    state: TaskState
    reason: str | None = None
    created_at: dt.datetime | None = None
    # INVALID that may not be final: the vendor's status covers a passing origin
    # fault as well as a missing file (Tencent ``invalid``: 4xx or 5xx). The URL is
    # pushed once more, after a delay, before it is left invalid.
    retry_once: bool = False


@dataclass(frozen=True)
class Features:
    """What a provider can do, declared by its module (rclone's ``Features()``).

    Callers read these instead of testing the provider's name: a new vendor
    states what it has and every command and test adapts.
    """

    # quota() asks an API; False: it answers from the last prefetch answer (Qiniu), or
    # the provider has no daily quota at all.
    quota_query: bool = True
    daily_quota: bool = True  # prefetching spends a per-day quota
    purge: bool = True  # purge_urls / purge_dirs / purge_status work
    # purge_dirs(delete=True) removes cached copies outright (Tencent FlushType=delete,
    # Alibaba Force=true) rather than marking them stale.
    purge_delete: bool = False
    stats: bool = False  # flux(): traffic statistics
    logs: bool = False  # logs(): access-log packages
    # No bucket_listing: `batch --qiniu-bucket` lists Qiniu storage (the origin) whatever
    # CDN pushes, with QiniuProvider.iter_keys, so no command asks it of a provider.
    # find_submitted asks the vendor's own task list, so a batch whose answer was
    # lost is reconciled from the vendor (not only from what this process saw).
    task_list: bool = True
    window_status: bool = False  # window_status(): one call covers many tasks
    domain_check: bool = False  # describe_domain(): the domain's status and area
    tasks_finish_on_submit: bool = False  # no PROCESSING: the outcome is known on return
    # A file the origin lacks ends INVALID; False: the vendor reports it like any
    # failure (Alibaba documents no 4xx failure description), so it ends FAILED.
    tells_missing_file: bool = True
    # The scheduler keeps as many pushes in flight as the rate and the observed round
    # trip need (CDN_PREHEAT_CONCURRENCY the floor). False: exactly
    # CDN_PREHEAT_CONCURRENCY (the http provider: each push is our own load on the edges).
    in_flight_follows_rate: bool = True


@dataclass(frozen=True)
class DomainInfo:
    """A CDN domain as the vendor's domain API describes it (``cdn-preheat doctor``)."""

    domain: str
    status: str  # the vendor's own word (online, offline, success, frozen, ...)
    online: bool
    area: str  # where it is accelerated, in the vendor's words
    covered: bool  # accelerated in the area this provider pushes to
    fix_area: str = ""  # the setting that would make ``covered`` true
    fix_status: str = ""  # what to do when it is not online (appended to the sentence)


class Provider(ABC):
    """One CDN account and area."""

    name: str
    features: ClassVar[Features] = Features()
    area: str
    limits: Limits
    # The deadline of one API call, in seconds (0: the SDK's own); a timed-out push
    # is given this long to take effect before the scheduler asks whether it did.
    call_timeout: float = 0.0
    # Each API's own rate limit, by budget name, with the vendor's source; and
    # which budget each API draws on when it is not the budget of its own name.
    budgets: ClassVar[Mapping[str, Budget]] = {}
    api_budgets: ClassVar[Mapping[str, str]] = {}
    # The API names of submit() and task_status(), for callers that pace or
    # hold back "the push API" or "the status API" without knowing the vendor.
    submit_api: ClassVar[str] = "submit"
    status_api: ClassVar[str] = "status"
    quota_api: ClassVar[str] = "quota"

    @property
    def pacing(self) -> Pacing:
        """This account's per-API limiters (made on first use)."""
        pacing = self.__dict__.get("_pacing")
        if pacing is None:
            with _PACING_LOCK:
                pacing = self.__dict__.get("_pacing")
                if pacing is None:
                    budgets = self.budgets or {
                        "*": Budget(self.limits.requests_per_second, source="Limits")
                    }
                    apis = self.api_budgets if self.budgets else {}
                    pacing = self.__dict__["_pacing"] = _Fallback(budgets, apis)
        return pacing

    def _pace(self, api: str, units: int = 1) -> Callable[[], None]:
        """Wait until ``api`` may be called (``units``: what the call spends of its budget).

        Call the returned function once the call has been answered or failed.
        The wait is added to this thread's :func:`paced_seconds`.
        """
        started = time.monotonic()
        try:
            return self.pacing.acquire(api, units)
        finally:
            _PACED.seconds = paced_seconds() + (time.monotonic() - started)

    def _slowed(self, api: str, retry_after: float | None) -> None:
        """The vendor said ``api`` went too fast: hold its budget back."""
        self.pacing.penalise(api, retry_after or backoff_delay(1))

    @abstractmethod
    def quota(self) -> Quota:
        """The prefetch quota left today (one API call, or the last answer seen)."""

    @abstractmethod
    def submit(self, urls: Sequence[str]) -> SubmitResult:
        """Prefetch these URLs (at most ``limits.batch_size``) as one task."""

    @abstractmethod
    def task_status(self, task_ids: Sequence[str]) -> list[TaskEntry]:
        """Per-URL state of these prefetch tasks."""

    def window_status(self, since: dt.datetime, until: dt.datetime) -> list[TaskEntry] | None:
        """Per-URL state of every prefetch task created from ``since`` to ``until``.

        For vendors that list tasks by time, so that one call covers many
        tasks; entries of tasks the caller does not know may be included.
        None (the default): not supported, ask :meth:`task_status` per task.
        """
        return None

    @abstractmethod
    def find_submitted(self, urls: Sequence[str], since: dt.datetime) -> dict[str, str]:
        """Which of ``urls`` the provider received since ``since``: url -> task id.

        Used after a crash to reconcile batches whose outcome was not recorded.
        """

    def find_request(self, urls: Sequence[str], since: dt.datetime) -> dict[str, str]:
        """Which of one unanswered request's ``urls`` the provider took: url -> task id.

        ``urls`` are exactly those of one :meth:`submit` call whose answer was lost
        (or timed out): a vendor that takes a request whole or refuses it whole may
        answer from a few of them. By default, :meth:`find_submitted`.
        """
        return self.find_submitted(urls, since)

    @abstractmethod
    def purge_urls(self, urls: Sequence[str]) -> str:
        """Refresh these URLs (at most ``limits.purge_batch_size``); the task id."""

    @abstractmethod
    def purge_dirs(self, dirs: Sequence[str], *, delete: bool = False) -> str:
        """Refresh everything under these directories; the task id.

        ``delete`` removes the cached copies outright instead of marking them
        stale (Tencent ``FlushType=delete``), where the vendor supports it.
        """

    @abstractmethod
    def purge_status(self, task_ids: Sequence[str]) -> list[TaskEntry]:
        """Per-URL (or per-directory) state of these refresh tasks."""

    def describe_domain(self, host: str) -> DomainInfo | None:
        """The domain ``host`` as the account's domain API reports it; None: not in the account.

        Only for providers whose :attr:`features` declare ``domain_check``.
        """
        raise NotImplementedError(f"{self.name} has no domain API")

    def close(self) -> None:  # noqa: B027 - optional hook, most providers hold nothing
        """Release connections."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _reconcilable(self, since: dt.datetime, now: dt.datetime, kept: str) -> dt.datetime:
        """``since`` (made aware, UTC); Unreconcilable when the vendor no longer keeps it.

        ``kept`` says what the vendor keeps, e.g. "Tencent Cloud keeps push logs":
        tasks older than ``limits.task_retention`` (less a margin for clock skew)
        can no longer be looked up.
        """
        if since.tzinfo is None:
            since = since.replace(tzinfo=dt.UTC)
        retention = self.limits.task_retention
        if retention is not None and since < now - retention + RETENTION_MARGIN:
            raise Unreconcilable(
                f"{kept} for {retention.days} days; a batch from "
                f"{since:%Y-%m-%d %H:%M} UTC can no longer be looked up."
            )
        return since


# Stay this far inside a vendor's task retention: our clock and the vendor's may differ.
RETENTION_MARGIN = dt.timedelta(minutes=5)


class VendorConfig(Protocol):
    """A provider's own settings model: built from the global Settings or plain arguments."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Any: ...


@dataclass(frozen=True)
class ProviderSpec:
    """One provider's registration: what the registry knows of it.

    ``config`` is the vendor's own settings model (``config.from_settings(Settings)``
    or ``config(**plain_arguments)``), ``build`` makes the provider from one.
    """

    provider: type[Provider]
    title: str  # the vendor's name in sentences: "Tencent Cloud"
    config: type[Any]
    build: Callable[[Any], Provider]
    # Settings variables holding the account's secrets (empty: none needed), key id
    # first, then the secret: the defaults of a target's key_id_env / key_secret_env.
    # The Settings field of each is its lower-case name.
    credentials: tuple[str, ...] = ()
    # Targets (docs/targets.md). The areas a target may name, its default first;
    # empty: the area is an id of the account's own (EdgeOne's zone), which a target
    # must give as ``zone`` (or ``area``).
    areas: tuple[str, ...] = ("global",)
    # The Settings field holding the area (None: the provider has the one area).
    area_setting: str | None = None
    # The Settings fields a target's ``endpoint`` sets (empty: it has none to point).
    endpoint_settings: tuple[str, ...] = ()
    # Which cache-status header its edges send (a key of cachestatus.VENDOR_HEADERS);
    # None: whatever CDN sits in front, read any known header.
    cache_vendor: str | None = None
    # The sandbox emulator module answering this provider's API; None: none (the http
    # provider talks to the edge itself).
    emulator: str | None = None
    # Where the API answers when no endpoint is configured (doctor's clock check),
    # and how far a request's signing time may be from the server's (None: unsigned time).
    default_api: str | None = None
    clock_tolerance: float | None = None

    @property
    def name(self) -> str:
        return self.provider.name

    @property
    def features(self) -> Features:
        return self.provider.features

    @property
    def zoned(self) -> bool:
        """The area is an id of the account's own (a zone), not one of a fixed list."""
        return not self.areas

    @property
    def default_area(self) -> str:
        """The area of a target that names none ("" for a zoned provider)."""
        return self.areas[0] if self.areas else ""

    def credential_settings(self) -> tuple[str, ...]:
        """The Settings fields of :attr:`credentials`."""
        return tuple(variable.lower() for variable in self.credentials)


class _Fallback(Pacing):
    """A pacing whose unknown APIs draw on the ``*`` budget (providers that declare none)."""

    def budget_of(self, api: str) -> str:
        try:
            return super().budget_of(api)
        except KeyError:
            if "*" in self._budgets:
                return "*"
            raise
