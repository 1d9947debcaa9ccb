"""cdn-preheat: preheat HLS and DASH video into CDNs before viewers arrive.

The public surface is what ``__all__`` lists: :class:`Preheater` and
:class:`AsyncPreheater`, :class:`TargetsPreheater` (every target of a targets
file at once, docs/targets.md), the result and record types they return, the
settings, and the error tree (every error is a :class:`PreheatError`).
Everything else is internal and may change. Names are loaded on first use,
so ``import cdn_preheat`` stays cheap (the CLI starts without pydantic).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from cdn_preheat.api import (
        AsyncPreheater,
        DrainResult,
        FailedUrl,
        Observer,
        Preheater,
        PurgeResult,
        PushResult,
        QueueResult,
        QuotaReport,
        StatusReport,
        VerifyResult,
        VideoStatus,
    )
    from cdn_preheat.config import Settings, load_settings
    from cdn_preheat.errors import (
        AreaMismatch,
        AuthError,
        BatchRefused,
        BatchTooLarge,
        ConfigError,
        DomainError,
        InputError,
        InvalidUrls,
        LedgerError,
        PermissionDenied,
        PlaylistError,
        PreheatError,
        ProviderError,
        QuotaExhausted,
        RateLimited,
        Transient,
        Unreconcilable,
    )
    from cdn_preheat.ledger.base import UrlState, VideoState
    from cdn_preheat.targets import (
        Feasibility,
        TargetCounts,
        TargetPurge,
        TargetQuota,
        TargetsPreheater,
        TargetsPurge,
        TargetsRun,
        TargetSummary,
        TargetsVerify,
        TargetVerify,
        UnitResult,
    )

_WHERE = {
    "cdn_preheat.api": (
        "AsyncPreheater", "DrainResult", "FailedUrl", "Observer", "Preheater", "PurgeResult",
        "PushResult", "QueueResult", "QuotaReport", "StatusReport", "VerifyResult",
        "VideoStatus",
    ),
    "cdn_preheat.config": ("Settings", "load_settings"),
    "cdn_preheat.errors": (
        "AreaMismatch", "AuthError", "BatchRefused", "BatchTooLarge", "ConfigError",
        "DomainError", "InputError", "InvalidUrls", "LedgerError", "PermissionDenied",
        "PlaylistError", "PreheatError", "ProviderError", "QuotaExhausted", "RateLimited",
        "Transient", "Unreconcilable",
    ),
    "cdn_preheat.ledger.base": ("UrlState", "VideoState"),
    "cdn_preheat.targets": (
        "Feasibility", "TargetCounts", "TargetPurge", "TargetQuota", "TargetSummary",
        "TargetVerify", "TargetsPreheater", "TargetsPurge", "TargetsRun", "TargetsVerify",
        "UnitResult",
    ),
}  # fmt: skip
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}

__all__ = [
    "AreaMismatch",
    "AsyncPreheater",
    "AuthError",
    "BatchRefused",
    "BatchTooLarge",
    "ConfigError",
    "DomainError",
    "DrainResult",
    "FailedUrl",
    "Feasibility",
    "InputError",
    "InvalidUrls",
    "LedgerError",
    "Observer",
    "PermissionDenied",
    "PlaylistError",
    "PreheatError",
    "Preheater",
    "ProviderError",
    "PurgeResult",
    "PushResult",
    "QueueResult",
    "QuotaExhausted",
    "QuotaReport",
    "RateLimited",
    "Settings",
    "StatusReport",
    "TargetCounts",
    "TargetPurge",
    "TargetQuota",
    "TargetSummary",
    "TargetVerify",
    "TargetsPreheater",
    "TargetsPurge",
    "TargetsRun",
    "TargetsVerify",
    "Transient",
    "UnitResult",
    "Unreconcilable",
    "UrlState",
    "VerifyResult",
    "VideoState",
    "VideoStatus",
    "__version__",
    "load_settings",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'cdn_preheat' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_MODULE_OF])
