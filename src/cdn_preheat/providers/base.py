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
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, Self

from cdn_preheat.ratelimit import Budget, Pacing, backoff_delay

_PACING_LOCK = threading.Lock()


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


class Provider(ABC):
    """One CDN account and area."""

    name: str
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
        """
        return self.pacing.acquire(api, units)

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

    def close(self) -> None:  # noqa: B027 - optional hook, most providers hold nothing
        """Release connections."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _Fallback(Pacing):
    """A pacing whose unknown APIs draw on the ``*`` budget (providers that declare none)."""

    def budget_of(self, api: str) -> str:
        try:
            return super().budget_of(api)
        except KeyError:
            if "*" in self._budgets:
                return "*"
            raise
