"""Targets: several providers, accounts and areas in one run (docs/targets.md).

A target is a provider, its credentials (named by environment variables, never
stored), an area or zone and a CDN host. ``CDN_PREHEAT_TARGETS`` names a TOML file
listing them; without it the single-provider settings are the one target, under
the ledger key they always had. Targets sharing a ``pool`` are pushed as one unit
that spends the members' combined quota (:class:`PoolProvider`).

One module a concern (docs/architecture.md):

- ``spec``: the targets file, read and validated, and the targets it describes;
- ``pool``: a provider under its target's key, and a pool of accounts as one;
- ``units``: the runnable units (a target, or a pool), built, checked, closed;
- ``queueing``: one expansion queued for every unit, the host mapped per unit;
- ``run``: the units' queues drained and followed side by side, or their workers;
- ``deadline``: whether each unit's queue can be warm by a deadline (``--by``);
- ``verify``, ``purge``: verification and purges on every target;
- ``status``, ``results``: the answers, per target;
- ``push``: the whole push; ``preheater``: :class:`TargetsPreheater`, the API.

Every name is importable from here, as from the single module it once was.
"""

from __future__ import annotations

from cdn_preheat.targets.deadline import (
    ColdVideo,
    Feasibility,
    feasibility,
    parse_deadline,
    planned_groups,
    urls_per_second,
)
from cdn_preheat.targets.deadline import _cold as _cold
from cdn_preheat.targets.pool import POOL_AREA, KeyedProvider, PoolProvider, pool_features
from cdn_preheat.targets.pool import _pooled_entry as _pooled_entry
from cdn_preheat.targets.preheater import TargetsPreheater
from cdn_preheat.targets.purge import (
    TargetPurge,
    TargetsPurge,
    map_to_host,
    purge_before_republish,
    purge_targets,
)
from cdn_preheat.targets.push import preheat
from cdn_preheat.targets.queueing import (
    combined,
    expand_host,
    expansion_for,
    map_host,
    preheated_everywhere,
    queue_for_units,
    queue_videos_for_units,
)
from cdn_preheat.targets.results import (
    TargetQuota,
    TargetsRun,
    TargetSummary,
    UnitResult,
    worst_code,
    worst_exit,
)
from cdn_preheat.targets.run import (
    ScopedLedger,
    run_unit_workers,
    run_units,
    scoped,
    unit_run_options,
)
from cdn_preheat.targets.spec import (
    Target,
    TargetSpec,
    load_targets_file,
    resolve_targets,
    target_settings,
)
from cdn_preheat.targets.status import (
    TargetCounts,
    describe_targets,
    status_by_unit,
    target_entries,
)
from cdn_preheat.targets.units import (
    ProviderFactory,
    Unit,
    build_units,
    check_units,
    close_units,
    live_quota,
)
from cdn_preheat.targets.verify import TargetsVerify, TargetVerify, verify_targets, verify_units

__all__ = [
    "POOL_AREA",
    "ColdVideo",
    "Feasibility",
    "KeyedProvider",
    "PoolProvider",
    "ProviderFactory",
    "ScopedLedger",
    "Target",
    "TargetCounts",
    "TargetPurge",
    "TargetQuota",
    "TargetSpec",
    "TargetSummary",
    "TargetVerify",
    "TargetsPreheater",
    "TargetsPurge",
    "TargetsRun",
    "TargetsVerify",
    "Unit",
    "UnitResult",
    "build_units",
    "check_units",
    "close_units",
    "combined",
    "describe_targets",
    "expand_host",
    "expansion_for",
    "feasibility",
    "live_quota",
    "load_targets_file",
    "map_host",
    "map_to_host",
    "parse_deadline",
    "planned_groups",
    "pool_features",
    "preheat",
    "preheated_everywhere",
    "purge_before_republish",
    "purge_targets",
    "queue_for_units",
    "queue_videos_for_units",
    "resolve_targets",
    "run_unit_workers",
    "run_units",
    "scoped",
    "status_by_unit",
    "target_entries",
    "target_settings",
    "unit_run_options",
    "urls_per_second",
    "verify_targets",
    "verify_units",
    "worst_code",
    "worst_exit",
]
