"""The service's own settings: API tokens and what it may fetch for its callers.

They are read like every other setting (environment, then ``.env``) but only by
``serve`` and the app, so the CLI's commands never need them. Lists are
comma-separated.

- ``CDN_PREHEAT_API_TOKENS``: bearer tokens every ``/v1`` call must carry.
- ``CDN_PREHEAT_API_TOKENS_FILE``: a file of more tokens, one a line (``#``
  comments and blank lines ignored), for secrets mounted as files.
- ``CDN_PREHEAT_ALLOWED_ORIGINS``: host patterns (``origin.example.com``,
  ``*.example.com``) of the playlists the service will fetch; required when it
  listens beyond loopback.
- ``CDN_PREHEAT_ALLOWED_NETWORKS``: addresses (CIDR) it may fetch although they
  are loopback, link-local, private or reserved (e.g. ``10.1.0.0/16`` for an
  origin inside the VPC); none by default.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cdn_preheat import redact
from cdn_preheat.config import describe_validation_error
from cdn_preheat.errors import ConfigError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def split_list(text: str | None) -> list[str]:
    return [item.strip() for item in (text or "").split(",") if item.strip()]


class ServiceSettings(BaseSettings):
    """Field names are the environment variable names."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        case_sensitive=False,
        extra="ignore",
        hide_input_in_errors=True,
    )

    cdn_preheat_api_tokens: SecretStr | None = None
    cdn_preheat_api_tokens_file: Path | None = None
    cdn_preheat_allowed_origins: str = ""
    cdn_preheat_allowed_networks: str = ""

    @field_validator("cdn_preheat_allowed_origins")
    @classmethod
    def _patterns(cls, value: str) -> str:
        for pattern in split_list(value):
            if "/" in pattern or "://" in pattern or " " in pattern:
                raise ValueError(
                    f"{pattern!r} is not a host pattern; give host names such as "
                    "origin.example.com or *.example.com, comma-separated"
                )
        return value

    @field_validator("cdn_preheat_allowed_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        for item in split_list(value):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"{item!r} is not an address or network; give CIDRs such as 10.1.0.0/16"
                ) from None
        return value

    @property
    def allowed_origins(self) -> tuple[str, ...]:
        return tuple(
            pattern.lower().rstrip(".") for pattern in split_list(self.cdn_preheat_allowed_origins)
        )

    @property
    def allowed_networks(self) -> tuple[IPNetwork, ...]:
        return tuple(
            ipaddress.ip_network(item, strict=False)
            for item in split_list(self.cdn_preheat_allowed_networks)
        )

    def api_tokens(self) -> tuple[str, ...]:
        """Every configured token (variable and file), registered for redaction.

        A file that cannot be read is a ConfigError naming the variable.
        """
        tokens = split_list(
            self.cdn_preheat_api_tokens.get_secret_value() if self.cdn_preheat_api_tokens else ""
        )
        path = self.cdn_preheat_api_tokens_file
        if path is not None and str(path).strip():
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
                raise ConfigError(
                    f"CDN_PREHEAT_API_TOKENS_FILE ({path}) cannot be read: {reason}."
                ) from None
            for raw in text.splitlines():
                line = raw.strip()
                if line and not line.startswith("#"):
                    tokens.extend(split_list(line))
        redact.register(*tokens)
        return tuple(dict.fromkeys(tokens))


def load_service_settings(**overrides: object) -> ServiceSettings:
    """The service settings, a bad value turned into one sentence (ConfigError)."""
    try:
        return ServiceSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
