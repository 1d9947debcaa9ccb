"""The whole sandbox: origin, edge and the CDN API emulators, started together.

Every API emulator is built from the same shared pieces (clock, edge cache,
origin, the edge's netloc, faults) plus its own credentials and limits, and
started with ``.start(port) -> LoopbackServer``. Which emulators there are comes
from the provider registry: each provider whose registration names an emulator
module gets that module's ``EMULATOR`` (:class:`~cdn_preheat.sandbox.core.EmulatorSpec`).
Adding a vendor adds nothing here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, cast

from pydantic import SecretStr

from cdn_preheat import config
from cdn_preheat.errors import InputError
from cdn_preheat.providers import provider_spec
from cdn_preheat.sandbox.aliyun import AliyunEmulator, AliyunLimits
from cdn_preheat.sandbox.core import (
    RATE_COUNTINGS,
    EdgeCache,
    Emulator,
    Faults,
    LoopbackServer,
    RateCounting,
    SandboxClock,
    Shared,
    emulator_specs,
)
from cdn_preheat.sandbox.edge import Edge, Vendor
from cdn_preheat.sandbox.edgeone import EdgeOneEmulator, EdgeOneLimits
from cdn_preheat.sandbox.origin import Origin, serve_origin
from cdn_preheat.sandbox.origin_auth import OriginSignatures
from cdn_preheat.sandbox.qiniu import SANDBOX_QINIU_PREFETCH_QUOTA, QiniuEmulator, QiniuLimits
from cdn_preheat.sandbox.tencent import TencentEmulator, TencentLimits

__all__ = ["SANDBOX_QINIU_PREFETCH_QUOTA", "Emulator", "Sandbox"]


@dataclasses.dataclass(frozen=True)
class TencentAccount:
    """A further Tencent Cloud account of the sandbox: its own keys, limits, faults.

    Keys default to public sandbox ones derived from the account's name.
    """

    limits: TencentLimits | None = None
    credentials: tuple[str, str] | None = None
    faults: Faults | None = None


def _account_keys(name: str) -> tuple[str, str]:
    """Public sandbox keys of a further account (they open nothing but the sandbox)."""
    tag = re.sub(r"[^A-Za-z0-9]", "", name)
    return (f"AKIDsandbox{tag}".ljust(36, "0"), f"sandbox-{tag}-secret-key")


# The Qiniu bucket `cdn-preheat sandbox` fills with the generated videos' keys, so
# `batch --qiniu-bucket sandbox-vod --domain <origin>` can be tried.
DEMO_BUCKET = "sandbox-vod"

# `--faults` names: the shared Faults field each one sets.
FAULT_NAMES = {
    "5xx": "server_error",
    "rate": "rate_limited",
    "drop": "drop",
    "lost": "lost_answer",
    "slow": "slow",
}
VENDORS = tuple(emulator_specs())
SANDBOX_VENDORS = frozenset(VENDORS)

# The order of consecutive ports from ``first_port``: origin, edge, then the APIs.
SERVER_ORDER = ("origin", "edge", *VENDORS)


class Sandbox:
    """Loopback servers for a complete preheat run; a context manager.

    Attributes: ``clock``, ``cache``, ``faults``, ``origin``, ``edge``,
    ``apis`` (every API emulator by provider name; ``tencent``, ``aliyun`` and ``qiniu``
    name theirs). The edge binds its
    port at construction (its netloc is the CDN domain every emulator checks);
    the other servers bind in ``start()``, after which ``endpoints`` and
    ``client_env()`` are available.
    """

    def __init__(
        self,
        *,
        videos: int = 3,
        variants: int = 3,
        segments: int = 20,
        tencent_limits: TencentLimits | None = None,
        edgeone_limits: EdgeOneLimits | None = None,
        aliyun_limits: AliyunLimits | None = None,
        aliyun_credentials: tuple[str, str] = (
            config.SANDBOX_ALIYUN_ACCESS_KEY_ID,
            config.SANDBOX_ALIYUN_ACCESS_KEY_SECRET,
        ),
        qiniu_limits: QiniuLimits | None = None,
        qiniu_credentials: tuple[str, str] = (
            config.SANDBOX_QINIU_ACCESS_KEY,
            config.SANDBOX_QINIU_SECRET_KEY,
        ),
        limits: Mapping[str, Any] | None = None,
        credentials: Mapping[str, tuple[str, str]] | None = None,
        origin_signatures: OriginSignatures | None = None,
        faults: Faults | None = None,
        secret_id: str = config.SANDBOX_TENCENT_SECRET_ID,
        secret_key: str = config.SANDBOX_TENCENT_SECRET_KEY,
        edge_vendor: Vendor = "tencent",
        ports: dict[str, int] | None = None,
        first_port: int = 0,
        task_delay: float | None = None,
        rate_counting: RateCounting | None = None,
        tencent_accounts: dict[str, TencentAccount] | None = None,
        edge_per_account: bool = False,
    ) -> None:
        """``task_delay``, when given, overrides every emulator's own (seconds to done);
        ``rate_counting`` likewise how every emulator counts its rates (``sliding``,
        ``fixed`` or ``bucket``: :data:`~cdn_preheat.sandbox.core.RateCounting`).

        ``limits`` and ``credentials`` set any emulator's by provider name (the
        ``tencent_limits``-style keywords are the same for the vendors they name:
        typed shorthands the tests use; a new vendor needs none of them).

        ``tencent_accounts``: further Tencent Cloud accounts by name (``tencent-b``),
        each its own emulator with its own keys, limits and faults, in front of the
        same edge (several accounts serving one domain, for targets and pools).

        ``edge_per_account``: every account (the vendors' and the further ones)
        owns a domain of its own, a further host of the edge (``hosts``) with its
        vendor's cache headers; a prefetch warms the file on that host only, so a
        per-target verification tells the accounts apart. The first Tencent
        account's domain stays ``edge.netloc``. Off (the default), every account
        owns the one edge's domain, as pools of accounts in front of one domain do.

        ``origin_signatures`` makes the origin's HTTP server demand signed URLs.
        ``first_port`` (0: any free ports) numbers the servers consecutively in
        ``SERVER_ORDER``; ``ports`` sets single ones.
        """
        numbered = (
            {name: first_port + i for i, name in enumerate(SERVER_ORDER)} if first_port else {}
        )
        self._ports = numbered | dict(ports or {})
        self.clock = SandboxClock()
        self.cache = EdgeCache()
        self.faults = faults or Faults()
        self.origin = Origin(
            videos=videos, variants=variants, segments=segments, signatures=origin_signatures
        )
        self.edge = Edge(self.origin, self.cache, edge_vendor)
        # The edge binds now: every emulator needs its netloc as the account's domain.
        self._edge_server = self.edge.bind(self._ports.get("edge", 0))
        given_limits: dict[str, Any] = {
            "tencent": tencent_limits, "edgeone": edgeone_limits, "aliyun": aliyun_limits,
            "qiniu": qiniu_limits, **(limits or {}),
        }  # fmt: skip
        given_credentials: dict[str, tuple[str, str]] = {
            "tencent": (secret_id, secret_key),
            # The same Tencent Cloud account (and keys) holds the EdgeOne zone.
            "edgeone": (secret_id, secret_key),
            "aliyun": aliyun_credentials,
            "qiniu": qiniu_credentials,
            **(credentials or {}),
        }
        shared = Shared(self.clock, self.cache, self.origin, self.edge.netloc, self.faults)
        self.emulators = emulator_specs()
        # Each account's domain (edge_per_account: a host of its own, on the one edge).
        self.hosts: dict[str, str] = {}
        self._host_servers: list[LoopbackServer] = []

        def shared_for(name: str, vendor: str) -> Shared:
            if not edge_per_account or name == "tencent":
                self.hosts[name] = self.edge.netloc
                return shared
            server = self.edge.bind_host(vendor)
            self._host_servers.append(server)
            self.hosts[name] = server.netloc
            return dataclasses.replace(shared, edge_netloc=server.netloc)

        self.credentials: dict[str, tuple[str, str]] = {}
        self.apis: dict[str, Emulator] = {}
        for name, spec in self.emulators.items():
            self.credentials[name] = given_credentials.get(name) or spec.credentials
            vendor_limits = spec.limits(given_limits.get(name), task_delay, rate_counting)
            own_shared = shared_for(name, name)
            self.apis[name] = spec.build(own_shared, self.credentials[name], vendor_limits)
        # Further accounts: name -> (vendor, emulator); their keys are in credentials.
        self.accounts: dict[str, tuple[str, Emulator]] = {}
        tencent = self.emulators["tencent"]
        for name, account in (tencent_accounts or {}).items():
            if name in self.apis:
                raise ValueError(f"the sandbox already has an account named {name}")
            self.credentials[name] = account.credentials or _account_keys(name)
            own = dataclasses.replace(
                shared_for(name, "tencent"), faults=account.faults or self.faults
            )
            limits_of = tencent.limits(account.limits, task_delay, rate_counting)
            self.apis[name] = tencent.build(own, self.credentials[name], limits_of)
            self.accounts[name] = ("tencent", self.apis[name])
        for api in self.apis.values():
            # Emulators with delayed tasks expose settle(); the edge runs it per request.
            settle = getattr(api, "settle", None)
            if settle is not None:
                self.edge.before_request.append(settle)
        self._servers: dict[str, LoopbackServer] = {}
        self._started = False

    # Typed handles on the emulators for tests (``apis[name]`` is the general form).
    @property
    def tencent(self) -> TencentEmulator:
        return cast("TencentEmulator", self.apis["tencent"])

    @property
    def edgeone(self) -> EdgeOneEmulator:
        return cast("EdgeOneEmulator", self.apis["edgeone"])

    @property
    def aliyun(self) -> AliyunEmulator:
        return cast("AliyunEmulator", self.apis["aliyun"])

    @property
    def qiniu(self) -> QiniuEmulator:
        return cast("QiniuEmulator", self.apis["qiniu"])

    @classmethod
    def from_settings(cls, settings: config.Settings, **options: Any) -> Sandbox:
        """A sandbox accepting the configured credentials, or the public sandbox ones.

        Each emulated provider's keys are the Settings fields its registration names
        (``ProviderSpec.credentials``); ``credentials=`` given here win.
        """
        configured: dict[str, tuple[str, str]] = {}
        for name in VENDORS:
            fields = provider_spec(name).credential_settings()
            values = [getattr(settings, field) for field in fields]
            if len(values) == 2 and all(isinstance(value, SecretStr) for value in values):
                configured[name] = (values[0].get_secret_value(), values[1].get_secret_value())
        options["credentials"] = {**configured, **options.get("credentials", {})}
        if settings.cdn_provider in SANDBOX_VENDORS:
            # The edge answers the configured vendor's cache header (EdgeOne's
            # EO-Cache-Status for CDN_PROVIDER=edgeone), as verify reads it.
            options.setdefault("edge_vendor", settings.cdn_provider)
        # Signed origins are Qiniu storage's (CDN_PREHEAT_ORIGIN_SIGNING=qiniu-*).
        signatures = _origin_signatures(settings, options["credentials"].get("qiniu"))
        if signatures is not None:
            options.setdefault("origin_signatures", signatures)
        return cls(**options)

    # -- lifecycle --------------------------------------------------------------

    def start(self) -> Sandbox:
        if self._started:
            return self
        self._started = True
        self._servers["origin"] = serve_origin(self.origin, self._ports.get("origin", 0))
        self._servers["edge"] = self._edge_server.start()
        for n, server in enumerate(self._host_servers, 1):
            self._servers[f"edge-{n}"] = server.start()
        for name, api in self.apis.items():
            self._servers[name] = api.start(self._ports.get(name, 0))
        return self

    def stop(self) -> None:
        if not self._started:
            # shutdown() waits for serve_forever, so a never-started edge is started first.
            self._edge_server.start()
            self._servers["edge"] = self._edge_server
            for n, server in enumerate(self._host_servers, 1):
                self._servers[f"edge-{n}"] = server.start()
        # Each stop waits out serve_forever's poll interval; waiting in parallel saves time.
        stoppers = [threading.Thread(target=server.stop) for server in self._servers.values()]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join()
        self._servers.clear()
        self._started = False

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses --------------------------------------------------------------

    @property
    def endpoints(self) -> dict[str, str]:
        """``origin`` and API URLs, and the ``edge`` netloc (the CDN domain)."""
        if not self._started:
            raise RuntimeError("start the sandbox first")
        endpoints = {"origin": self._servers["origin"].url, "edge": self.edge.netloc}
        endpoints.update({name: self._servers[name].url for name in self.apis})
        return endpoints

    def client_env(self, provider: str = "tencent") -> dict[str, str]:
        """Environment variables that point a client at this sandbox.

        When the origin demands signatures, the variables that make the
        expander sign its fetches are included.
        """
        env = {"CDN_PROVIDER": provider, "CDN_HOST": self.edge.netloc}
        endpoints = self.endpoints
        for name, spec in self.emulators.items():
            env.update(spec.client_env(endpoints[name], self.credentials[name]))
        signatures = self.origin.signatures
        if signatures is not None:
            # A private bucket is signed with the account's Qiniu keys (above).
            env["CDN_PREHEAT_ORIGIN_SIGNING"] = signatures.mode
            if signatures.mode == "qiniu-timestamp":
                env["CDN_PREHEAT_ORIGIN_ANTI_LEECH_KEY"] = signatures.anti_leech_key
        return env

    def targets_file(
        self, path: str | Path, names: Sequence[str], *, pools: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """Write a targets file (docs/targets.md) for these accounts; the environment it needs.

        ``names``: ``tencent``, ``qiniu``, ``aliyun`` or a further account's name;
        ``pools``: target name -> pool name (members must share a domain: a sandbox
        without ``edge_per_account``). The keys go in the returned variables
        (``SANDBOX_<NAME>_KEY_ID`` / ``_KEY_SECRET``), never in the file.
        """
        endpoints = self.endpoints
        tables = []
        env = {"CDN_PREHEAT_TARGETS": str(path)}
        for name in names:
            vendor = self.accounts[name][0] if name in self.accounts else name
            variable = "SANDBOX_" + re.sub(r"[^A-Z0-9]", "_", name.upper())
            env[f"{variable}_KEY_ID"], env[f"{variable}_KEY_SECRET"] = self.credentials[name]
            lines = [
                "[[targets]]",
                f'name = "{name}"',
                f'provider = "{vendor}"',
                f'cdn_host = "{self.hosts.get(name, self.edge.netloc)}"',
                f'endpoint = "{endpoints[name]}"',
                f'key_id_env = "{variable}_KEY_ID"',
                f'key_secret_env = "{variable}_KEY_SECRET"',
            ]
            registration = provider_spec(vendor)
            if registration.zoned and registration.area_setting:
                # The zone the emulator serves, as its client variables name it.
                client = self.emulators[vendor].client_env(endpoints[name], self.credentials[name])
                lines.append(f'zone = "{client[registration.area_setting.upper()]}"')
            pool = (pools or {}).get(name)
            if pool:
                lines.append(f'pool = "{pool}"')
            tables.append("\n".join(lines))
        Path(path).write_text("\n\n".join(tables) + "\n", encoding="utf-8")
        return env

    def fill_demo_bucket(self, bucket: str = DEMO_BUCKET) -> None:
        """Store every generated video's playlists in a Qiniu bucket of the emulator."""
        keys = [
            path.lstrip("/")
            for video_id in self.origin.video_ids()
            for path in self.origin.catalog_paths(video_id)
            if path.endswith(".m3u8")
        ]
        self.qiniu.put_objects(bucket, keys)

    def set_limits(self, *, quota: dict[str, int], rate: dict[str, int]) -> None:
        """Daily prefetch quota and request rate per vendor (``tencent``, ``edgeone``, ``aliyun``,
        ``qiniu``).

        Rates: Tencent and EdgeOne requests a second per API, Alibaba calls a second (each API's
        lower documented budget still applies), Qiniu URLs a second.
        """
        for name, spec in self.emulators.items():
            if name in quota or name in rate:
                spec.set_limits(self.apis[name], quota.get(name), rate.get(name))

    def video_url(self, video_id: str) -> str:
        """The origin URL of a video's master playlist."""
        return f"{self.endpoints['origin']}/vod/{video_id}/master.m3u8"

    def dash_url(self, video_id: str) -> str:
        """The origin URL of a video's DASH MPD."""
        return f"{self.endpoints['origin']}/vod/{video_id}/manifest.mpd"

    def edge_url(self, path: str) -> str:
        """The CDN URL of an origin path."""
        return self.edge.url(path)


def _origin_signatures(
    settings: config.Settings, qiniu_credentials: tuple[str, str] | None
) -> OriginSignatures | None:
    """What the origin demands when ``CDN_PREHEAT_ORIGIN_SIGNING`` is configured."""
    mode = settings.cdn_preheat_origin_signing
    if mode == "qiniu-private":
        access_key, secret_key = qiniu_credentials or (
            config.SANDBOX_QINIU_ACCESS_KEY,
            config.SANDBOX_QINIU_SECRET_KEY,
        )
        return OriginSignatures(mode, access_key=access_key, secret_key=secret_key)
    if mode == "qiniu-timestamp":
        key = config.require_secret(
            settings.cdn_preheat_origin_anti_leech_key, "CDN_PREHEAT_ORIGIN_ANTI_LEECH_KEY"
        )
        return OriginSignatures(mode, anti_leech_key=key)
    return None


def parse_faults(text: str, *, latency_ms: float = 0, slow_ms: float = 3000) -> Faults:
    """``5xx=0.1,drop=0.1,lost=0.05,slow=0.05,rate=0.1`` -> Faults; InputError otherwise."""
    chances: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        field = FAULT_NAMES.get(name.strip())
        try:
            chance = float(value) if sep else -1.0
        except ValueError:
            chance = -1.0
        if field is None or not 0 <= chance <= 1:
            raise InputError(
                f"--faults takes NAME=CHANCE pairs with NAME one of "
                f"{', '.join(FAULT_NAMES)} and CHANCE from 0 to 1, not {part!r}."
            )
        chances[field] = chance
    if sum(chances.values()) > 1:
        raise InputError("--faults chances add up to more than 1.")
    if latency_ms < 0 or slow_ms < 0:
        raise InputError("--latency-ms and --slow-ms cannot be negative.")
    faults = Faults(latency=latency_ms / 1000, slow_seconds=slow_ms / 1000)
    for field, chance in chances.items():
        setattr(faults, field, chance)
    return faults


def parse_per_vendor(text: str, option: str) -> dict[str, int]:
    """``tencent=1000,qiniu=100`` -> {vendor: count}; InputError naming ``option``."""
    values: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        try:
            number = int(value) if sep else 0
        except ValueError:
            number = 0
        if name.strip() not in VENDORS or number < 1:
            raise InputError(
                f"{option} takes VENDOR=N pairs with VENDOR one of {', '.join(VENDORS)} "
                f"and N a positive whole number, not {part!r}."
            )
        values[name.strip()] = number
    return values


def parse_rate_counting(text: str) -> RateCounting:
    """``sliding``, ``fixed`` or ``bucket`` (:data:`RATE_COUNTINGS`); InputError otherwise."""
    for counting in RATE_COUNTINGS:
        if text.strip().lower() == counting:
            return counting
    raise InputError(f"--rate-counting takes one of {', '.join(RATE_COUNTINGS)}, not {text!r}.")


def run_forever(
    sandbox: Sandbox,
    on_ready: Callable[[dict[str, str]], None],
    stop: threading.Event | None = None,
) -> None:
    """Serve until Ctrl-C, SIGTERM or ``stop`` is set; ``on_ready`` gets the endpoints."""
    stopped = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with sandbox, contextlib.suppress(KeyboardInterrupt):
        on_ready(sandbox.endpoints)
        while not stopped.wait(0.5):
            pass
