"""Keeping secrets out of every message, log line and traceback the CLI prints.

Two layers: the secret values themselves (keys, the MongoDB password), which
:func:`register` records when the settings are read, and patterns for what
SDKs put in their debug logs (``Authorization`` headers, TC3 and QBox
signatures, ``Signature=``/``SecretId=`` query parameters, URL userinfo).
:func:`redact` applies both; :class:`RedactingFilter` applies them to every
log record, SDK loggers and httpx included, before any handler formats it.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, unquote, unquote_plus

MASK = "***"

_lock = threading.Lock()
_secrets: set[str] = set()

# Secrets shorter than this are not registered: replacing "a" everywhere would
# make every message unreadable and protects nothing.
_MIN_SECRET = 4

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # Authorization / X-Qiniu / X-Acs signature headers, in dicts or in raw text.
    (
        re.compile(
            r"""(?i)(['"]?(?:authorization|x-tc-token|x-acs-signature|x-acs-security-token)"""
            r"""['"]?\s*[:=]\s*['"]?)[^'"\r\n,}]+"""
        ),
        rf"\1{MASK}",
    ),
    # TC3-HMAC-SHA256 Credential=AKID.../date/cdn/tc3_request, ..., Signature=hex
    (re.compile(r"(?i)(Credential=)[^\s,/'\"]+"), rf"\1{MASK}"),
    (re.compile(r"(?i)(Signature=)[^\s,&'\"]+"), rf"\1{MASK}"),
    (re.compile(r"(?i)((?:SecretId|AccessKeyId|SecurityToken)=)[^\s,&'\"]+"), rf"\1{MASK}"),
    # Qiniu private download URLs: ?e=deadline&token=AK:signature
    (re.compile(r"(?i)([?&]token=)[^\s&'\"]+"), rf"\1{MASK}"),
    (
        re.compile(r"""(?i)(['"](?:SecretId|AccessKeyId|Signature)['"]\s*:\s*['"])[^'"]*"""),
        rf"\1{MASK}",
    ),
    # Qiniu "QBox AK:sign" and "Qiniu AK:sign"
    (re.compile(r"\b(QBox|Qiniu|acs)\s+[^\s:'\"]+:[^\s'\",]+"), rf"\1 {MASK}"),
    # userinfo of any URL: scheme://user:password@host (the password may hold
    # unescaped @ or /: the userinfo runs to the last @ before whitespace).
    (
        re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s'\"]*@(?=[^\s'\"@]*(?:$|[\s'\"]))"),
        rf"\1{MASK}@",
    ),
]


def register(*values: str | None) -> None:
    """Remember secret values so that :func:`redact` masks them wherever they appear."""
    with _lock:
        for value in values:
            if not value:
                continue
            forms = {value, value.strip(), unquote(value), unquote_plus(value)}
            forms |= {quote(form, safe="") for form in list(forms)}
            forms |= {quote_plus(form, safe="") for form in list(forms)}
            for form in forms:
                if len(form) >= _MIN_SECRET:
                    _secrets.add(form)


def registered() -> Iterable[str]:
    with _lock:
        return sorted(_secrets, key=len, reverse=True)


def redact(text: str) -> str:
    """``text`` with every registered secret and every credential pattern masked."""
    for secret in registered():
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def strip_userinfo(url: str) -> str:
    """``url`` without ``user:password@`` in its authority (RFC 3986 section 3.2)."""
    match = re.match(r"(?i)^([a-z][a-z0-9+.-]*://)([^/?#]*)(.*)$", url, re.DOTALL)
    if match is None or "@" not in match[2]:
        return url
    return f"{match[1]}{match[2].rpartition('@')[2]}{match[3]}"


def has_userinfo(url: str) -> bool:
    return strip_userinfo(url) != url


class RedactingFilter(logging.Filter):
    """Masks secrets in a record's message and arguments, exception text included."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: let logging report it as usual
            return True
        record.msg = redact(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install_logging_filter() -> None:
    """Put the filter on every handler of the root logger (SDK records propagate there)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
