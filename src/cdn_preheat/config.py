"""Settings: the only place that reads the environment.

Names keep the old script's variables (``TENCENT_SECRET_ID``,
``TENCENT_SECRET_KEY``, ``CDN_HOST``, ``MONGODB_URI``); everything new is
prefixed ``CDN_PREHEAT_`` or named after its vendor. Values come from the
environment, then from ``.env`` in the working directory.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from cdn_preheat import redact
from cdn_preheat.errors import ConfigError

# A provider's name: one of cdn_preheat.providers.provider_names() (the registry).
ProviderName = str
OriginSigning = Literal["none", "qiniu-private", "qiniu-timestamp"]
TencentArea = Literal["mainland", "overseas", "global"]

# Credentials the sandbox accepts when none are configured. They are public on
# purpose: they only ever open the local emulators.
SANDBOX_TENCENT_SECRET_ID = "AKIDsandbox000000000000000000000000"
SANDBOX_TENCENT_SECRET_KEY = "sandbox-tencent-secret-key"
SANDBOX_QINIU_ACCESS_KEY = "sandbox-qiniu-access-key"
SANDBOX_QINIU_SECRET_KEY = "sandbox-qiniu-secret-key"
SANDBOX_ALIYUN_ACCESS_KEY_ID = "LTAIsandbox0000000000"
SANDBOX_ALIYUN_ACCESS_KEY_SECRET = "sandbox-aliyun-access-key-secret"


class Settings(BaseSettings):
    """Configuration. Field names are the environment variable names."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        case_sensitive=False,
        extra="ignore",
        hide_input_in_errors=True,
    )

    _demo_keys: set[str] = PrivateAttr(default_factory=set)

    # The old script's variables.
    tencent_secret_id: SecretStr | None = None
    tencent_secret_key: SecretStr | None = None
    cdn_host: str | None = Field(
        default=None, description="CDN domain that playlist-host URLs are rewritten to"
    )
    mongodb_uri: SecretStr | None = None

    # Provider selection and per-vendor options.
    cdn_provider: ProviderName = "tencent"
    # A TOML file listing several targets (providers, accounts, areas): docs/targets.md.
    cdn_preheat_targets: str | None = None
    tencent_area: TencentArea = "mainland"
    tencent_layer: Literal["middle", ""] = ""
    tencent_user_agent: str | None = None
    tencent_headers: dict[str, str] = Field(default_factory=dict)
    tencent_endpoint: str | None = Field(
        default=None, description="API endpoint override, e.g. http://127.0.0.1:8090"
    )
    tencent_region: str = ""

    # Tencent EdgeOne (CDN_PROVIDER=edgeone): the Tencent credentials above, a zone (site).
    eo_zone_id: str | None = Field(default=None, description="EdgeOne zone id, zone-...")
    # CreatePrefetchTaskRequest.Mode: "default" prefetches to the middle layer, "edge"
    # (whitelisted) to the edge and middle layer.
    eo_mode: Literal["default", "edge"] = "default"
    eo_encode_url: bool = False
    eo_headers: dict[str, str] = Field(default_factory=dict)
    eo_endpoint: str | None = Field(
        default=None, description="teo API endpoint override, e.g. teo.intl.tencentcloudapi.com"
    )

    qiniu_access_key: SecretStr | None = None
    qiniu_secret_key: SecretStr | None = None
    qiniu_endpoint: str | None = None
    qiniu_rsf_endpoint: str | None = Field(
        default=None, description="bucket listing (RSF) endpoint override, e.g. the sandbox"
    )
    qiniu_api_endpoint: str | None = Field(
        default=None, description="domain API (api.qiniu.com) override, for doctor"
    )

    aliyun_access_key_id: SecretStr | None = None
    aliyun_access_key_secret: SecretStr | None = None
    aliyun_endpoint: str | None = None
    aliyun_area: Literal["domestic", "overseas"] = "domestic"
    aliyun_l2_preload: bool = False

    # Edge requests (verify, and the http warm provider). Lists are comma-separated.
    cdn_preheat_edge_ips: str | None = Field(
        default=None, description="edge addresses to pin requests to, e.g. 1.2.3.4,5.6.7.8:8080"
    )
    cdn_preheat_user_agent: str | None = None
    cdn_preheat_referer: str | None = None
    cdn_preheat_warm_encodings: str | None = Field(
        default=None, description="Accept-Encoding variants to warm, e.g. gzip,identity"
    )
    cdn_preheat_warm_bandwidth: float | None = Field(default=None, gt=0, description="bytes/s")
    cdn_preheat_warm_concurrency: int = Field(default=8, ge=1, le=256)

    # Store.
    cdn_preheat_store: Literal["auto", "sqlite", "mongodb"] = "auto"
    cdn_preheat_db: str = "cdn-preheat.sqlite3"
    # Seconds to wait for another process's lock on the SQLite ledger before giving up.
    cdn_preheat_lock_timeout: float = Field(default=30.0, gt=0)
    # MongoDB: seconds to find a server and to connect (pymongo serverSelectionTimeoutMS,
    # connectTimeoutMS), and for one operation's answer (socketTimeoutMS).
    cdn_preheat_mongo_connect_timeout: float = Field(default=3.0, gt=0)
    cdn_preheat_mongo_socket_timeout: float = Field(default=60.0, gt=0)

    # Expansion.
    cdn_preheat_allow_foreign_hosts: bool = False
    cdn_preheat_fetch_concurrency: int = Field(default=16, ge=1, le=256)
    cdn_preheat_fetch_timeout: float = Field(default=15.0, gt=0)  # each connect and read
    # Seconds for one playlist, retries included: a trickling origin cannot hold a video.
    cdn_preheat_fetch_deadline: float = Field(default=60.0, gt=0)
    cdn_preheat_max_playlist_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)  # decoded
    # One video expanding past this is an error (HLS and DASH alike).
    cdn_preheat_max_urls_per_video: int = Field(default=200_000, ge=1)
    # DASH: preheat every alternative BaseURL (CDN failover), not only the first.
    cdn_preheat_dash_all_base_urls: bool = False
    # Private origins: playlists are fetched with signed URLs; pushed URLs stay unsigned.
    cdn_preheat_origin_signing: OriginSigning = "none"
    cdn_preheat_origin_anti_leech_key: SecretStr | None = None
    cdn_preheat_origin_sign_expires: int = Field(default=3600, ge=60, le=7 * 24 * 3600)

    # Scheduling.
    cdn_preheat_max_age: dt.timedelta = dt.timedelta(days=3)
    cdn_preheat_rate: float | None = Field(default=None, gt=0, description="requests/s cap")
    cdn_preheat_batch_size: int | None = Field(default=None, ge=1)
    # Pushes in flight; None: automatic, from 4 up to what the rate and the API's
    # observed round trip need (scheduler.in_flight_needed: 1.5 x rate x median, + 1), at most 64.
    cdn_preheat_concurrency: int | None = Field(default=None, ge=1, le=64)
    cdn_preheat_lease_seconds: float = Field(default=120.0, gt=0)
    # Deadline of one CDN API call; never more than half the lease (see api_deadline).
    cdn_preheat_api_timeout: float = Field(default=15.0, gt=0)
    cdn_preheat_max_attempts: int = Field(default=3, ge=1)
    # Tencent "invalid" (origin 4xx or 5xx) is pushed once more this long after it is seen.
    cdn_preheat_invalid_retry_seconds: float = Field(default=30.0, ge=0)
    # The pause between looks at the open push tasks; a look that closes less than
    # half of them doubles it (up to 15 s). The sandbox's tasks end in moments.
    cdn_preheat_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    cdn_preheat_quota_utc_offset_hours: int | None = Field(default=None, ge=-12, le=14)

    # Service: signed webhooks (POSTed when a video is done or failed, or the
    # day's quota is spent with work queued) and storage notifications.
    cdn_preheat_webhook_url: str | None = Field(
        default=None, description="receiver of the signed webhook events (http or https)"
    )
    cdn_preheat_webhook_secret: SecretStr | None = None
    cdn_preheat_webhook_timeout: float = Field(default=10.0, gt=0)  # seconds for one POST
    # Storage notifications (POST /v1/events/qiniu, /v1/events/s3): the host that
    # serves the bucket, a playlist's URL is https://HOST/KEY (or a scheme://host).
    cdn_preheat_events_origin: str | None = None
    # Seconds between a playlist's notification and queueing it (segments may still upload).
    cdn_preheat_events_settle_seconds: float = Field(default=60.0, ge=0)

    @field_validator("cdn_preheat_webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        return value.strip()

    @property
    def api_deadline(self) -> float:
        """Seconds a CDN API call may take: the timeout, within half the claim lease.

        A batch's lease must outlast its call, or a worker recovering what looks
        like a dead worker's batch could push it while the call is still on its way.
        """
        return min(self.cdn_preheat_api_timeout, self.cdn_preheat_lease_seconds / 2)

    @field_validator(
        "tencent_endpoint",
        "eo_endpoint",
        "qiniu_endpoint",
        "qiniu_rsf_endpoint",
        "qiniu_api_endpoint",
        "aliyun_endpoint",
    )
    @classmethod
    def _endpoint_has_scheme(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value if "://" in value else f"https://{value}")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must look like http://host:port or host:port")
        return f"{parts.scheme}://{parts.netloc}"

    @field_validator("cdn_provider")
    @classmethod
    def _registered_provider(cls, value: str) -> str:
        from cdn_preheat.providers import provider_names

        value = value.strip().lower()
        if value not in provider_names():
            raise ValueError(f"must be one of {', '.join(provider_names())}")
        return value

    @field_validator("cdn_host")
    @classmethod
    def _bare_host(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        value = value.strip()
        # The old script's users sometimes wrote a URL here; keep only the host.
        netloc = urlsplit(value).netloc if "://" in value else value.rstrip("/")
        # A space, a query or a user@ is no host name: without this the CDN would be
        # asked about "a b" and answer that the account has no such domain.
        if not netloc or any(char.isspace() or char in "/?#@\\" for char in netloc):
            raise ValueError("must be a host name such as cdn.example.com")
        return netloc.lower()

    @field_validator("cdn_preheat_edge_ips")
    @classmethod
    def _edge_addresses(cls, value: str | None) -> str | None:
        from cdn_preheat.edgehttp import parse_edge_addresses

        if value is None or not value.strip():
            return None
        parse_edge_addresses(value)  # ValueError names the bad address
        return value

    @field_validator("mongodb_uri")
    @classmethod
    def _mongodb_uri(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        uri = value.get_secret_value().strip()
        redact.register(*mongodb_secrets(uri))
        check_mongodb_uri(uri)
        return SecretStr(uri)

    @model_validator(mode="after")
    def _sandbox_demo_keys(self) -> Settings:
        """A vendor whose endpoint is overridden and whose keys are both unset gets the
        sandbox's public demo keys, so ``TENCENT_ENDPOINT=<sandbox>`` alone reaches it.

        They open nothing but the sandbox: a real API refuses them as wrong keys.
        The vendors' fields are spelled here, not read from the registry: Settings is
        validated before any provider (SDK) or emulator module is imported.
        """
        vendors = (
            ("tencent_secret_id", "tencent_secret_key", (self.tencent_endpoint, self.eo_endpoint),
             SANDBOX_TENCENT_SECRET_ID, SANDBOX_TENCENT_SECRET_KEY),
            ("qiniu_access_key", "qiniu_secret_key", (self.qiniu_endpoint, self.qiniu_rsf_endpoint),
             SANDBOX_QINIU_ACCESS_KEY, SANDBOX_QINIU_SECRET_KEY),
            ("aliyun_access_key_id", "aliyun_access_key_secret", (self.aliyun_endpoint,),
             SANDBOX_ALIYUN_ACCESS_KEY_ID, SANDBOX_ALIYUN_ACCESS_KEY_SECRET),
        )  # fmt: skip
        for id_name, secret_name, endpoints, demo_id, demo_secret in vendors:
            if not any(endpoints) or _is_set(getattr(self, id_name)):
                continue
            if _is_set(getattr(self, secret_name)):
                continue
            setattr(self, id_name, SecretStr(demo_id))
            setattr(self, secret_name, SecretStr(demo_secret))
            self._demo_keys.add(id_name.split("_", 1)[0])
        return self

    @property
    def sandbox_demo_keys(self) -> frozenset[str]:
        """Vendors (tencent, qiniu, aliyun) given the sandbox's demo keys."""
        return frozenset(self._demo_keys)

    @property
    def store_kind(self) -> Literal["sqlite", "mongodb"]:
        if self.cdn_preheat_store == "auto":
            return "mongodb" if self.mongodb_uri is not None else "sqlite"
        return self.cdn_preheat_store


# RFC 3986 gen-delims: MongoDB's URI parser requires them percent-encoded in the
# user name and password (https://www.mongodb.com/docs/manual/reference/connection-string/
# "If the username or password includes the following characters: $ : / ? # [ ] @
# those characters must be converted using percent encoding").
_URI_RESERVED = set(":/?#[]@")


def _mongodb_parts(uri: str) -> tuple[str, str | None, str]:
    """(scheme, userinfo or None, the rest), splitting the userinfo at the *last* ``@``.

    Splitting at the last ``@`` keeps a password holding an unescaped ``@`` or
    ``/`` inside the userinfo, where it is masked, never in the hosts part.
    """
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return "", None, uri
    userinfo, at, hosts = rest.rpartition("@")
    return scheme, (userinfo if at else None), hosts


def mongodb_secrets(uri: str) -> list[str]:
    """The URI and its password (however it is written) for redaction."""
    _, userinfo, _ = _mongodb_parts(uri)
    secrets = [uri]
    if userinfo is not None and ":" in userinfo:
        secrets.append(userinfo.partition(":")[2])
    return secrets


def check_mongodb_uri(uri: str) -> None:
    """Raise ValueError (never echoing the password) when ``uri`` cannot be a MongoDB URI."""
    scheme, userinfo, rest = _mongodb_parts(uri)
    if scheme not in ("mongodb", "mongodb+srv"):
        raise ValueError("must start with mongodb:// or mongodb+srv://")
    if userinfo is not None:
        user, _, password = userinfo.partition(":")
        if not user or _URI_RESERVED & set(user) or _URI_RESERVED & set(password):
            raise ValueError(
                "the user name and password must be percent-encoded (RFC 3986): "
                "write @ / : ? # [ ] as %40 %2F %3A %3F %23 %5B %5D, e.g. with "
                "urllib.parse.quote_plus"
            )
    hosts = rest.partition("/")[0].partition("?")[0]
    if not hosts:
        raise ValueError("names no host")
    for host in hosts.split(","):
        name, port = host, ""
        if host.startswith("["):
            name, _, tail = host[1:].partition("]")
            port = tail[1:] if tail.startswith(":") else ""
        elif ":" in host:
            name, _, port = host.rpartition(":")
        if not name:
            raise ValueError("has an empty host name")
        if port and (not port.isdigit() or not 0 < int(port) < 65536):
            raise ValueError(f"host {name} has a bad port; give a number from 1 to 65535")
        if port and scheme == "mongodb+srv":
            raise ValueError("a mongodb+srv:// URI takes no port")


def _is_set(value: SecretStr | None) -> bool:
    return value is not None and bool(value.get_secret_value().strip())


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning validation failures into one clear sentence."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
    except SettingsError as exc:
        raise ConfigError(_describe_settings_error(exc)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"the .env file is not UTF-8 text (byte {exc.start} cannot be decoded); "
            "save it as UTF-8."
        ) from None
    except OSError as exc:
        raise ConfigError(f"the .env file cannot be read ({exc.strerror}).") from None
    _register_secrets(settings)
    return settings


def _describe_settings_error(exc: SettingsError) -> str:
    """pydantic-settings' 'error parsing value for field "x" from source "..."'."""
    match = re.search(r'field "([^"]+)"', str(exc))
    name = match[1].upper() if match else "a setting"
    return f'{name} is invalid: it must be JSON, e.g. {name}=\'{{"Name": "value"}}\'.'


def _register_secrets(settings: Settings) -> None:
    values = [
        getattr(settings, name).get_secret_value()
        for name, field in Settings.model_fields.items()
        if getattr(settings, name) is not None and field.annotation in (SecretStr, SecretStr | None)
    ]
    redact.register(*values)


def describe_validation_error(exc: ValidationError) -> str:
    """One sentence per bad variable, naming it, never echoing its value."""
    sentences = []
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"]).upper() or "configuration"
        message = str(error["msg"]).removeprefix("Value error, ").rstrip(".")
        if error["type"] == "dict_type":  # JSON, but not an object ("[1, 2]", "3")
            message = f'it must be a JSON object, e.g. {name}=\'{{"Name": "value"}}\''
        sentences.append(f"{name} is invalid: {message}.")
    return " ".join(sentences)


def require_secret(value: SecretStr | None, variable: str) -> str:
    """The secret's value, or a ConfigError naming the unset variable."""
    if value is None or not value.get_secret_value().strip():
        raise ConfigError(f"{variable} is not set; export it or put it in .env.")
    return value.get_secret_value().strip()
