"""Settings: the only place that reads the environment.

Names keep the old script's variables (``TENCENT_SECRET_ID``,
``TENCENT_SECRET_KEY``, ``CDN_HOST``, ``MONGODB_URI``); everything new is
prefixed ``CDN_PREHEAT_`` or named after its vendor. Values come from the
environment, then from ``.env`` in the working directory.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cdn_preheat.errors import ConfigError

ProviderName = Literal["tencent", "qiniu", "aliyun", "http"]
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

    # The old script's variables.
    tencent_secret_id: SecretStr | None = None
    tencent_secret_key: SecretStr | None = None
    cdn_host: str | None = Field(
        default=None, description="CDN domain that playlist-host URLs are rewritten to"
    )
    mongodb_uri: SecretStr | None = None

    # Provider selection and per-vendor options.
    cdn_provider: ProviderName = "tencent"
    tencent_area: TencentArea = "mainland"
    tencent_layer: Literal["middle", ""] = ""
    tencent_user_agent: str | None = None
    tencent_headers: dict[str, str] = Field(default_factory=dict)
    tencent_endpoint: str | None = Field(
        default=None, description="API endpoint override, e.g. http://127.0.0.1:8090"
    )
    tencent_region: str = ""

    qiniu_access_key: SecretStr | None = None
    qiniu_secret_key: SecretStr | None = None
    qiniu_endpoint: str | None = None
    qiniu_rsf_endpoint: str | None = Field(
        default=None, description="bucket listing (RSF) endpoint override, e.g. the sandbox"
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
    cdn_preheat_max_playlist_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    # One video expanding past this is an error (HLS and DASH alike).
    cdn_preheat_max_urls_per_video: int = Field(default=200_000, ge=1)
    # Private origins: playlists are fetched with signed URLs; pushed URLs stay unsigned.
    cdn_preheat_origin_signing: OriginSigning = "none"
    cdn_preheat_origin_anti_leech_key: SecretStr | None = None
    cdn_preheat_origin_sign_expires: int = Field(default=3600, ge=60, le=7 * 24 * 3600)

    # Scheduling.
    cdn_preheat_max_age: dt.timedelta = dt.timedelta(days=3)
    cdn_preheat_rate: float | None = Field(default=None, gt=0, description="requests/s cap")
    cdn_preheat_batch_size: int | None = Field(default=None, ge=1)
    cdn_preheat_concurrency: int = Field(default=4, ge=1, le=64)
    cdn_preheat_lease_seconds: float = Field(default=120.0, gt=0)
    cdn_preheat_max_attempts: int = Field(default=3, ge=1)
    cdn_preheat_quota_utc_offset_hours: int | None = Field(default=None, ge=-12, le=14)

    @field_validator("tencent_endpoint", "qiniu_endpoint", "qiniu_rsf_endpoint", "aliyun_endpoint")
    @classmethod
    def _endpoint_has_scheme(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value if "://" in value else f"https://{value}")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must look like http://host:port or host:port")
        return f"{parts.scheme}://{parts.netloc}"

    @field_validator("cdn_host")
    @classmethod
    def _bare_host(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        value = value.strip()
        # The old script's users sometimes wrote a URL here; keep only the host.
        netloc = urlsplit(value).netloc if "://" in value else value.rstrip("/")
        if not netloc or "/" in netloc:
            raise ValueError("must be a host name such as cdn.example.com")
        return netloc.lower()

    @property
    def store_kind(self) -> Literal["sqlite", "mongodb"]:
        if self.cdn_preheat_store == "auto":
            return "mongodb" if self.mongodb_uri is not None else "sqlite"
        return self.cdn_preheat_store


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning validation failures into one clear sentence."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    """One sentence per bad variable, naming it, never echoing its value."""
    sentences = []
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"]).upper() or "configuration"
        sentences.append(f"{name} is invalid: {error['msg']}.")
    return " ".join(sentences)


def require_secret(value: SecretStr | None, variable: str) -> str:
    """The secret's value, or a ConfigError naming the unset variable."""
    if value is None or not value.get_secret_value().strip():
        raise ConfigError(f"{variable} is not set; export it or put it in .env.")
    return value.get_secret_value().strip()
