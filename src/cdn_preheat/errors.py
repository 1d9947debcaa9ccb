"""Every error cdn-preheat raises on purpose, in one place.

Callers catch :class:`PreheatError`; the CLI maps each branch to an exit code
and prints ``str(error)``, which is one sentence without secrets.

    PreheatError
    ├── ConfigError          a setting is missing or malformed (exit 2)
    ├── InputError           a bad argument or input file line (exit 2)
    ├── PlaylistError        a playlist could not be fetched or parsed (exit 2)
    ├── LedgerError          the store is unreachable, locked or corrupt (exit 1;
    │                        a path that cannot be opened is a ConfigError)
    └── ProviderError        the CDN API refused or failed (exit 1 unless noted)
        ├── AuthError        wrong credentials: stop, name the variables (exit 2)
        │   └── PermissionDenied  the key works but lacks a permission: name it
        ├── AreaMismatch     the configured area is not where the domain is served (exit 2)
        ├── ZoneNotFound     the configured zone (EdgeOne EO_ZONE_ID) is not the account's (exit 2)
        ├── DomainError      the URL's host is not a domain of this CDN account (exit 2
        │                    when it stops a run: CDN_HOST or --domain is wrong)
        ├── QuotaExhausted   the daily quota is spent: stop for today (exit 3)
        ├── RateLimited      too many requests: back off and retry
        ├── BatchTooLarge    the request carried more URLs than allowed
        ├── InvalidUrls      some URLs were refused: mark them, go on
        ├── BatchRefused     the whole request was refused because of some of its
        │                    URLs, unnamed: split it until they are isolated
        ├── Unreconcilable   the provider can no longer tell whether a lost request
        │                    arrived (its task list no longer reaches back that far)
        └── Transient        5xx, timeout, dropped connection: retry with backoff

The scheduler acts on the provider branch: it retries ``RateLimited`` and
``Transient``, marks ``InvalidUrls``, and stops on the rest.
"""

from __future__ import annotations

from collections.abc import Mapping


class PreheatError(Exception):
    """Base class; ``str(error)`` is safe to print."""

    exit_code = 1


class ConfigError(PreheatError):
    """A configuration value is missing or malformed."""

    exit_code = 2


class InputError(PreheatError):
    """A command-line argument or an input line is unusable."""

    exit_code = 2


class PlaylistError(PreheatError):
    """A playlist could not be fetched, or what came back is not a playlist."""

    exit_code = 2

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason


class LedgerError(PreheatError):
    """The ledger store cannot be used (locked, corrupt, unreachable)."""


class ProviderError(PreheatError):
    """A CDN API call failed. ``code`` is the vendor's error code, if any."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class AuthError(ProviderError):
    """The CDN rejected the credentials; the message names the variables.

    A configuration error like any other (exit 2): the fix is in the settings.
    """

    exit_code = 2


class PermissionDenied(AuthError):
    """The credentials are valid but lack a permission; the message names the action."""


class AreaMismatch(ProviderError):
    """The configured prefetch area is not one the account or domain is served in."""

    exit_code = 2


class ZoneNotFound(ProviderError):
    """The configured zone (EdgeOne's site, ``EO_ZONE_ID``) does not exist in the account.

    A configuration error (exit 2): no URL of the run can be pushed until it is fixed.
    """

    exit_code = 2


class DomainError(ProviderError):
    """The URL's host is not a domain configured on this CDN account.

    The scheduler isolates refused foreign hosts and goes on; what reaches a
    caller is ``CDN_HOST`` or ``--domain`` itself refused: a setting or argument
    to fix, so exit 2 like every configuration error (the README's rule).
    """

    exit_code = 2


class QuotaExhausted(ProviderError):
    """The provider's daily quota is spent; the rest stays queued."""

    exit_code = 3


class RateLimited(ProviderError):
    """The provider asked us to slow down."""

    def __init__(
        self, message: str, *, code: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class BatchTooLarge(ProviderError):
    """The request carried more URLs than the provider accepts at once."""


class InvalidUrls(ProviderError):
    """The provider refused some URLs; the others may have been accepted.

    ``invalid`` maps each refused URL to the reason. ``task_id`` is set when the
    provider accepted the rest of the batch as a task.
    """

    def __init__(
        self,
        message: str,
        *,
        invalid: Mapping[str, str],
        task_id: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.invalid = dict(invalid)
        self.task_id = task_id


class BatchRefused(ProviderError):
    """The CDN refused the whole request because of some of its URLs, without naming them.

    Examples: Tencent ``InvalidParameter.CdnUrlExceedLength``, a gateway's 414 for
    a query string too long, a host that is not a CDN domain of the account. The
    scheduler splits the batch until each refused URL stands alone, marks it
    ``invalid`` with ``str(error)`` as the reason, and pushes the rest. ``per_host``
    says the refusal concerns a host (every URL of that host shares it), so the
    batch may be split by host before it is bisected.
    """

    def __init__(self, message: str, *, code: str | None = None, per_host: bool = False) -> None:
        super().__init__(message, code=code)
        self.per_host = per_host


class Unreconcilable(ProviderError):
    """The provider's task list cannot say whether these URLs were submitted.

    Raised by ``find_submitted`` when the batch is older than the vendor keeps
    tasks. The scheduler then releases the URLs for a new push: a duplicate push
    costs quota, a batch that can never be settled would stop every later run.
    """


class Transient(ProviderError):
    """A failure worth retrying: 5xx, timeout, dropped connection.

    ``timed_out``: no answer came within the call's deadline, so the request may
    still be in progress at the provider and take effect later.
    """

    def __init__(self, message: str, *, code: str | None = None, timed_out: bool = False) -> None:
        super().__init__(message, code=code)
        self.timed_out = timed_out
