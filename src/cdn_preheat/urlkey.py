"""The part of a URL that CDNs keep when they answer with it: outcomes match on it.

A task list may not echo the exact string that was submitted. Alibaba's
``ObjectPath`` is documented as ``加速域名/文件`` (domain/file, no scheme), and
any vendor may normalise a URL the way RFC 3986 §6.2.2 allows: lower-case
host, upper-case percent-encoding hex digits, unreserved characters decoded,
the default port dropped. :func:`url_key` removes exactly those differences,
so a result still finds the ledger row it belongs to. ``yarl`` does the
RFC 3986 normalisation.
"""

from __future__ import annotations

from functools import lru_cache

from yarl import URL

_DEFAULT_PORTS = {"http": 80, "https": 443}


@lru_cache(maxsize=65_536)
def url_key(url: str) -> str:
    """``url`` without its scheme, default port, host case and percent-encoding case."""
    text = url.strip()
    if "://" not in text:
        text = f"http://{text}"
    try:
        parsed = URL(text)
    except ValueError:
        return text.lower()
    host = (parsed.raw_host or "").lower()
    port = parsed.explicit_port
    if port is not None and port != _DEFAULT_PORTS.get(parsed.scheme.lower()):
        host = f"{host}:{port}"
    query = parsed.raw_query_string
    return f"{host}{parsed.raw_path or '/'}{'?' + query if query else ''}"


def match_urls(reported: str, candidates: dict[str, list[str]]) -> str | None:
    """The submitted URL that ``reported`` stands for, given candidates keyed by url_key.

    An exact string match wins; otherwise the one candidate with the same key.
    Two candidates sharing a key (``%2A`` and ``*``) and neither exact: None.
    """
    same = candidates.get(url_key(reported), [])
    if reported in same:
        return reported
    return same[0] if len(same) == 1 else None
