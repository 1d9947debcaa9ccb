"""Resolve playlist references the way a browser does, and map hosts.

Players request URLs as the WHATWG URL Standard builds them, which differs
from ``urllib.parse.urljoin`` (RFC 3986): empty path segments (``.//x``) are
kept, ``\\`` counts as ``/``, spaces and non-ASCII are percent-encoded as
UTF-8, and existing ``%XX`` escapes are left alone. Only ``http`` and
``https`` are followed; everything else is unusable for a CDN.

Pure functions: no I/O here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_DEFAULT_PORTS = {"http": "80", "https": "443"}

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
# Leading/trailing C0 controls and spaces are trimmed; tabs and newlines removed.
_C0_OR_SPACE = "".join(chr(c) for c in range(0x21))
_TAB_OR_NEWLINE = re.compile(r"[\t\n\r]")

# WHATWG percent-encode sets, less the C0 controls and non-ASCII that every
# set includes. "#" and "?" never reach a path or query here: they split it.
_PATH_ENCODE = frozenset(' "<>^`{}')
_QUERY_ENCODE = frozenset(" \"<>'")
_NEEDS_PATH_ENCODING = re.compile(r'[^\x21-\x7e]|[ "<>^`{}]')
_NEEDS_QUERY_ENCODING = re.compile(r"[^\x21-\x7e]|[ \"<>']")

_SINGLE_DOT = frozenset({".", "%2e"})
_DOUBLE_DOT = frozenset({"..", ".%2e", "%2e.", "%2e%2e"})

# A relative reference that resolves by plain concatenation onto the base's
# directory: no scheme (so no ":" in the path), no segment that starts with
# "." or "%" (so no dot segment), no empty segment, no character that needs
# encoding, no fragment. Most segment lines look like this.
_SIMPLE_SEGMENT = r"[A-Za-z0-9_~!$&'()*+,;=@\-][A-Za-z0-9_~!$&'()*+,;=@%.\-]*"
_SIMPLE_REF = re.compile(
    rf"(?:{_SIMPLE_SEGMENT}/)*{_SIMPLE_SEGMENT}(?:\?[A-Za-z0-9_~!$&()*+,;=:@%./?\-]*)?"
)


class UnusableUrl(ValueError):
    """A reference that cannot be preheated; ``reason`` says why."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ParsedUrl:
    """An absolute, normalised http(s) URL without fragment."""

    scheme: str
    netloc: str  # [userinfo@]host[:port], host lowercased, default port dropped
    path: str  # starts with "/", percent-encoded, dot segments removed
    query: str | None  # without the "?"; None when there is no "?"

    def __str__(self) -> str:
        head = f"{self.scheme}://{self.netloc}{self.path}"
        return head if self.query is None else f"{head}?{self.query}"

    @property
    def hostport(self) -> str:
        """``host[:port]``, without any userinfo."""
        return self.netloc.rpartition("@")[2]

    @property
    def directory(self) -> str:
        """The URL up to and including the last ``/`` of the path."""
        return f"{self.scheme}://{self.netloc}{self.path[: self.path.rfind('/') + 1]}"


def parse_url(url: str) -> ParsedUrl:
    """Parse and normalise an absolute http(s) URL."""
    cleaned = _clean(url)
    match = _SCHEME.match(cleaned)
    if match is None:
        raise UnusableUrl(url, "not an absolute URL")
    scheme = match.group(1).lower()
    if scheme not in _DEFAULT_PORTS:
        raise UnusableUrl(url, f"unsupported scheme {scheme}")
    return _parse_after_scheme(scheme, cleaned[match.end() :].lstrip("/\\"), url)


def normalize_url(url: str) -> str:
    """``url`` as a browser would request it."""
    return str(parse_url(url))


def resolve(base: ParsedUrl, ref: str) -> ParsedUrl:
    """Resolve ``ref`` against ``base`` as the WHATWG URL parser does."""
    cleaned = _clean(ref)
    match = _SCHEME.match(cleaned)
    if match is not None:
        scheme = match.group(1).lower()
        if scheme not in _DEFAULT_PORTS:
            raise UnusableUrl(cleaned, f"unsupported scheme {scheme}")
        rest = cleaned[match.end() :]
        # "http:x.ts" under an http base is a relative reference to browsers.
        if scheme != base.scheme or rest.startswith(("/", "\\")):
            return _parse_after_scheme(scheme, rest.lstrip("/\\"), ref)
        cleaned = rest
    if cleaned.startswith(("//", "\\\\", "/\\", "\\/")):
        return _parse_after_scheme(base.scheme, cleaned.lstrip("/\\"), ref)

    rest, _, _fragment = cleaned.partition("#")
    path, has_query, query = rest.partition("?")
    if path.startswith(("/", "\\")):
        new_path = path
    elif path:
        new_path = base.path[: base.path.rfind("/") + 1] + path
    else:
        # "?q" keeps the base path; "" and "#f" keep the base query too.
        return ParsedUrl(
            base.scheme, base.netloc, base.path, _encode_query(query) if has_query else base.query
        )
    return ParsedUrl(
        base.scheme,
        base.netloc,
        _normalize_path(new_path),
        _encode_query(query) if has_query else None,
    )


def resolve_url(base: str, ref: str) -> str:
    """Resolve ``ref`` against the absolute URL ``base``; both as strings."""
    return str(resolve(parse_url(base), ref))


@dataclass(frozen=True, slots=True)
class HostMap:
    """Which hosts belong to the video, and the CDN host they are served from.

    ``origin`` is the source playlist's ``host[:port]``. URLs there are
    rewritten to ``cdn_host`` (path and query kept); URLs already on
    ``cdn_host`` are kept; others are foreign and refused unless allowed.
    """

    origin: str
    cdn_host: str | None = None
    allow_foreign: bool = False

    def apply(self, url: ParsedUrl) -> str:
        """The URL to preheat for ``url``; raises UnusableUrl for a foreign host."""
        host = url.hostport
        if host == self.origin:
            if self.cdn_host is None or self.cdn_host == host:
                return str(url)
            mapped = ParsedUrl(url.scheme, self.cdn_host, url.path, url.query)
            return str(mapped)
        if host == self.cdn_host or self.allow_foreign:
            return str(url)
        raise UnusableUrl(str(url), f"foreign host {host}")


class Resolver:
    """Resolves the references of one playlist and maps their hosts.

    The base URL is parsed once; references that need neither dot-segment
    removal nor escaping are concatenated onto the mapped base directory.
    """

    __slots__ = ("_base", "_hosts", "_mapped_directory")

    def __init__(self, base_url: str, hosts: HostMap) -> None:
        self._base = parse_url(base_url)
        self._hosts = hosts
        try:
            self._mapped_directory: str | None = hosts.apply(
                ParsedUrl(self._base.scheme, self._base.netloc, self._base.path, None)
            ).rpartition("/")[0]
        except UnusableUrl:
            self._mapped_directory = None

    @property
    def base(self) -> ParsedUrl:
        return self._base

    def locate(self, ref: str) -> ParsedUrl:
        """Where ``ref`` points, before host mapping (for fetching)."""
        return resolve(self._base, ref)

    def output(self, ref: str) -> str:
        """The URL to preheat for ``ref``; raises UnusableUrl."""
        if self._mapped_directory is not None and _SIMPLE_REF.fullmatch(ref):
            return f"{self._mapped_directory}/{ref}"
        return self._hosts.apply(resolve(self._base, ref))


def _clean(value: str) -> str:
    value = value.strip(_C0_OR_SPACE)
    if "\t" in value or "\n" in value or "\r" in value:
        value = _TAB_OR_NEWLINE.sub("", value)
    return value


def _parse_after_scheme(scheme: str, rest: str, original: str) -> ParsedUrl:
    """Parse ``authority[path][?query][#fragment]`` of a special-scheme URL."""
    end = len(rest)
    for stop in "/\\?#":
        position = rest.find(stop)
        if position != -1 and position < end:
            end = position
    netloc = _normalize_authority(scheme, rest[:end], original)
    remainder, _, _fragment = rest[end:].partition("#")
    path, has_query, query = remainder.partition("?")
    return ParsedUrl(
        scheme,
        netloc,
        _normalize_path(path or "/"),
        _encode_query(query) if has_query else None,
    )


def _normalize_authority(scheme: str, authority: str, original: str) -> str:
    userinfo, at, hostport = authority.rpartition("@")
    if hostport.startswith("["):
        host, bracket, port_part = hostport.partition("]")
        host += bracket
        if port_part and not port_part.startswith(":"):
            raise UnusableUrl(original, "invalid URL: malformed IPv6 host")
        port = port_part[1:]
    else:
        host, _, port = hostport.partition(":")
    if not host:
        raise UnusableUrl(original, "invalid URL: no host")
    host = _normalize_host(host, original)
    if port and not (port.isascii() and port.isdigit() and int(port) <= 65535):
        raise UnusableUrl(original, f"invalid URL: bad port {port!r}")
    port = str(int(port)) if port else ""
    netloc = host if not port or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    return f"{_encode(userinfo, _PATH_ENCODE, _NEEDS_PATH_ENCODING)}@{netloc}" if at else netloc


def _normalize_host(host: str, original: str) -> str:
    if host.isascii():
        if any(c in host for c in " <>^|%\\/?#@"):
            raise UnusableUrl(original, f"invalid URL: bad host {host!r}")
        return host.lower()
    try:
        return host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise UnusableUrl(original, f"invalid URL: bad host {host!r}") from None


def _normalize_path(path: str) -> str:
    """Encode a path, turn ``\\`` into ``/`` and remove dot segments, keeping empty ones."""
    if "\\" in path:
        path = path.replace("\\", "/")
    path = _encode(path, _PATH_ENCODE, _NEEDS_PATH_ENCODING)
    if "." not in path:
        return path
    segments = path[1:].split("/")
    kept: list[str] = []
    last = len(segments) - 1
    for position, segment in enumerate(segments):
        lowered = segment.lower()
        if lowered in _DOUBLE_DOT:
            if kept:
                kept.pop()
            if position == last:
                kept.append("")
        elif lowered in _SINGLE_DOT:
            if position == last:
                kept.append("")
        else:
            kept.append(segment)
    return "/" + "/".join(kept)


def _encode_query(query: str) -> str:
    return _encode(query, _QUERY_ENCODE, _NEEDS_QUERY_ENCODING)


def _encode(text: str, encode_set: frozenset[str], needs: re.Pattern[str]) -> str:
    if needs.search(text) is None:
        return text
    return "".join(
        "".join(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))
        if char in encode_set or not "\x20" < char < "\x7f"
        else char
        for char in text
    )
