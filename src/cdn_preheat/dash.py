"""Expand an MPEG-DASH MPD into every URL a player may request.

The rules are those of ISO/IEC 23009-1 (clause numbers below are the 5th
edition's, 2022): Period timing (5.3.2.1), BaseURL resolution (5.6),
segment information and its inheritance (5.3.9), SegmentTimeline (5.3.9.6)
and template identifiers (5.3.9.4.4, table 24). The fetch, the URL resolver,
host mapping and the output type are HLS's (:mod:`cdn_preheat.hls`,
:mod:`cdn_preheat.urlresolve`): an MPD is one more kind of source playlist,
told apart by the response (:func:`looks_like_mpd`), not by its extension.

XML is parsed by the standard library's expat through ``defusedxml``, which
refuses DTDs, so entity expansion ("billion laughs") and external entities
(XXE) never run; durations are parsed by ``isodate``.

Output per Representation, in document order (Period, AdaptationSet,
Representation): its initialization segment (and index segment when it is a
separate file), then its media segments in playback order. ``index`` counts
the Representation's media segments within its Period, so head-first
priority takes the first N segments (or seconds) of every Representation.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import xml.etree.ElementTree as ET  # types and ParseError; parsing goes through defusedxml
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

from cdn_preheat.errors import PlaylistError
from cdn_preheat.hls import UrlKind, UrlLimitExceeded, UrlList
from cdn_preheat.urlresolve import HostMap, Resolver, UnusableUrl, parse_url, resolve

DASH_CONTENT_TYPE = "application/dash+xml"
DEFAULT_MAX_URLS_PER_VIDEO = 200_000
LIMIT_SETTING = "CDN_PREHEAT_MAX_URLS_PER_VIDEO"
ALL_BASE_URLS_SETTING = "CDN_PREHEAT_DASH_ALL_BASE_URLS"

_XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
# 5.5.3: a remote element that resolves to nothing; the element is simply removed.
_RESOLVE_TO_ZERO = "urn:mpeg:dash:resolve-to-zero:2013"
_MPD_TAG = re.compile(r"<(?:[A-Za-z_][\w.-]*:)?MPD[\s>/]")
_SNIFF_CHARS = 64 * 1024
_SEGMENT_INFO = ("SegmentTemplate", "SegmentList", "SegmentBase")
# 5.3.9.4.4, table 24; the format tag is "%0[width]d" there; dash.js also
# takes the other printf integer conversions, so they are accepted too.
_IDENTIFIERS = frozenset({"RepresentationID", "Number", "Time", "Bandwidth"})
_FORMAT_TAG = re.compile(r"%0(\d+)([diuxXo])")

Skip = Callable[[str, str], None]


def looks_like_mpd(text: str, content_type: str = "") -> bool:
    """Whether a fetched body is to be read as an MPD: its type, or an ``<MPD`` root."""
    if "dash+xml" in content_type.lower():
        return True
    prefix = text[:256]
    start = len(prefix) - len(prefix.lstrip())
    if not text.startswith("<", start):
        return False
    return _MPD_TAG.search(text, start, start + _SNIFF_CHARS) is not None


def parse_mpd(text: str, url: str) -> ET.Element:
    """The MPD's root element; PlaylistError naming ``url`` for anything else."""
    # Imported here, like the SDKs: an HLS-only run never loads them.
    import defusedxml
    import defusedxml.ElementTree

    try:
        # forbid_dtd: an MPD has no DTD, so a DOCTYPE is refused before any
        # entity is declared (XML bombs, external entities).
        root: ET.Element = defusedxml.ElementTree.fromstring(text, forbid_dtd=True)
    except defusedxml.DefusedXmlException:
        raise PlaylistError(
            url, "refused: the MPD has a DOCTYPE (entity expansion and external entities)"
        ) from None
    except ET.ParseError as exc:
        raise PlaylistError(url, f"malformed MPD: {exc}") from None
    if _local(root.tag) != "MPD":
        raise PlaylistError(url, f"root element is <{_local(root.tag)}>, not an MPD")
    return root


@dataclass(frozen=True)
class MpdExpansion:
    """What one MPD lists below itself."""

    urls: UrlList  # compact, as HLS's media lists
    is_live: bool


def expand_mpd(
    text: str,
    url: str,
    base_url: str,
    rendition: str,
    hosts: HostMap,
    skip: Skip,
    max_urls: int = DEFAULT_MAX_URLS_PER_VIDEO,
    *,
    all_base_urls: bool = False,
) -> MpdExpansion:
    """Every init and media segment of the MPD ``text`` fetched from ``url``.

    ``base_url`` is where the MPD was served from (after redirects),
    ``rendition`` the MPD's output URL, which prefixes each Representation's
    rendition name. Unusable and foreign URLs go to ``skip``. ``all_base_urls``
    expands every alternative BaseURL, not only the first.
    """
    root = parse_mpd(text, url)
    expander = _MpdExpander(root, url, base_url, rendition, hosts, skip, max_urls)
    expander.all_base_urls = all_base_urls
    return expander.run()


# --------------------------------------------------------------------------- helpers


def _local(tag: object) -> str:
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [child for child in element if _local(child.tag) == name]


def _child(element: ET.Element | None, name: str) -> ET.Element | None:
    if element is None:
        return None
    for child in element:
        if _local(child.tag) == name:
            return child
    return None


_INTEGER = re.compile(r"\s*[+-]?\d+\s*")


def _seconds(delta: dt.timedelta) -> Fraction:
    """A timedelta as exact seconds."""
    return Fraction(delta.days * 86400 + delta.seconds) + Fraction(delta.microseconds, 1_000_000)


@dataclass(frozen=True)
class _Segment:
    ref: str
    duration: float | None


class _Naming:
    """Names elements in error messages: ``Representation "v1" of Period "p0"``."""

    def __init__(self, url: str) -> None:
        self.url = url

    def error(self, where: str, message: str) -> PlaylistError:
        return PlaylistError(self.url, f"{where}: {message}")


# --------------------------------------------------------------------------- templates


class _Template:
    """A SegmentTemplate string with $RepresentationID$/$Bandwidth$ filled in.

    Compiled to a ``str.format`` pattern with ``{n}`` (Number) and ``{t}`` (Time).
    """

    __slots__ = ("_pattern", "has_number", "has_time")

    def __init__(
        self,
        template: str,
        where: str,
        naming: _Naming,
        representation_id: str | None,
        bandwidth: str | None,
        *,
        allow_number_time: bool = True,
    ) -> None:
        pieces = template.split("$")
        if len(pieces) % 2 == 0:
            raise naming.error(where, f"template {template!r} has an unmatched $")
        out: list[str] = []
        self.has_number = self.has_time = False
        for position, piece in enumerate(pieces):
            if position % 2 == 0:
                out.append(piece.replace("{", "{{").replace("}", "}}"))
                continue
            if piece == "":
                out.append("$")  # "$$" is a literal dollar sign
                continue
            name, percent, tag = piece.partition("%")
            if name not in _IDENTIFIERS:
                raise naming.error(where, f"template {template!r} has unknown identifier ${piece}$")
            spec = ""
            if percent:
                match = _FORMAT_TAG.fullmatch("%" + tag)
                if match is None or name == "RepresentationID":
                    raise naming.error(where, f"template {template!r} has bad format ${piece}$")
                width, conversion = match.groups()
                spec = f":0{int(width)}{'d' if conversion in 'diu' else conversion}"
            if name in ("Number", "Time"):
                if not allow_number_time:
                    raise naming.error(where, f"${name}$ is not allowed in {template!r}")
                self.has_number |= name == "Number"
                self.has_time |= name == "Time"
                out.append("{" + ("n" if name == "Number" else "t") + spec + "}")
                continue
            value = representation_id if name == "RepresentationID" else bandwidth
            if value is None:
                attribute = "id" if name == "RepresentationID" else "bandwidth"
                raise naming.error(
                    where, f"${name}$ is used but the Representation has no @{attribute}"
                )
            if spec:
                if not value.isdigit():
                    raise naming.error(where, f"${piece}$ formats a non-integer {value!r}")
                out.append(format(int(value), spec[1:]))
            else:
                out.append(value.replace("{", "{{").replace("}", "}}"))
        self._pattern = "".join(out)

    def render(self, number: int = 0, time: int = 0) -> str:
        return self._pattern.format(n=number, t=time)


# --------------------------------------------------------------------------- the expander


@dataclass(frozen=True)
class _Period:
    element: ET.Element
    label: str  # @id, or its position
    start: Fraction | None
    duration: Fraction | None


@dataclass
class _Run:
    """One S element: ``count`` segments of ``d`` from ``t``, numbered from ``n``."""

    t: int
    d: int
    count: int
    n: int


class _MpdExpander:
    def __init__(
        self,
        root: ET.Element,
        url: str,
        base_url: str,
        rendition: str,
        hosts: HostMap,
        skip: Skip,
        max_urls: int,
    ) -> None:
        self.root = root
        self.url = url
        self.naming = _Naming(url)
        self.document_base = base_url
        self.rendition = rendition
        self.hosts = hosts
        self.skip = skip
        self.max_urls = max_urls
        self.dynamic = root.get("type", "static").strip() == "dynamic"
        self.total = 1  # the MPD itself
        self.urls = UrlList()
        self.all_base_urls = False

    # -- document structure ----------------------------------------------------

    def run(self) -> MpdExpansion:
        bases = self._bases(self.root, [self.document_base], "MPD")
        periods = self._periods()
        if not periods:
            raise self.naming.error("MPD", "no Period")
        for period in periods:
            element = period.element
            where = f'Period "{period.label}"'
            if not bases or self._external(element, bases[0], "Period"):
                continue
            period_bases = self._bases(element, bases, where)
            for set_index, adaptation in enumerate(_children(element, "AdaptationSet")):
                set_label = adaptation.get("id") or str(set_index)
                set_where = f'AdaptationSet "{set_label}" of {where}'
                if not period_bases or self._external(adaptation, period_bases[0], "AdaptationSet"):
                    continue
                set_bases = self._bases(adaptation, period_bases, set_where)
                for rep_index, representation in enumerate(_children(adaptation, "Representation")):
                    rep_id = representation.get("id")
                    rep_where = (
                        f'Representation "{rep_id if rep_id is not None else rep_index}"'
                        f" of AdaptationSet {set_label!r} of {where}"
                    )
                    name = f"{self.rendition}#{period.label}/{set_label}/{rep_id or rep_index}"
                    levels = [element, adaptation, representation]
                    for k, base in enumerate(self._bases(representation, set_bases, rep_where)):
                        # Each alternative location is a rendition of its own for head-first.
                        label = f"{name}@{k}" if k else name
                        self._representation(period, levels, base, rep_where, label)
        return MpdExpansion(self.urls, self.dynamic)

    def _external(self, element: ET.Element, base: str, kind: str) -> bool:
        """An xlink:href element is reported (not fetched: it is resolved at play time)."""
        href = element.get(_XLINK_HREF)
        if href is None:
            return False
        if href.strip() != _RESOLVE_TO_ZERO:
            try:
                target = self.hosts.apply(resolve(parse_url(base), href))
            except UnusableUrl as exc:
                target = exc.url
            self.skip(target, f"external {kind} (xlink:href), not expanded")
        return True

    def _bases(self, element: ET.Element, parents: list[str], where: str) -> list[str]:
        """``parents`` resolved with the element's BaseURLs (5.6).

        Players use one location, the first; the others are reported, or kept
        too with ``all_base_urls``. An unusable first BaseURL is reported and
        nothing below it is expanded.
        """
        elements = _children(element, "BaseURL")
        if not elements:
            return parents
        chosen: dict[str, None] = {}
        for parent in parents:
            parsed = parse_url(parent)
            for position, base in enumerate(elements):
                try:
                    resolved = resolve(parsed, (base.text or "").strip())
                except UnusableUrl as exc:
                    self.skip(exc.url, f"{exc.reason} (BaseURL of {where})")
                    if position == 0 and not self.all_base_urls:
                        break
                    continue
                if position == 0 or self.all_base_urls:
                    chosen.setdefault(str(resolved))
                    continue
                try:
                    shown = self.hosts.apply(resolved)
                except UnusableUrl as exc:
                    shown = exc.url
                self.skip(
                    shown,
                    f"alternative BaseURL of {where}; only the first is preheated"
                    f" ({ALL_BASE_URLS_SETTING} keeps all)",
                )
        return list(chosen)

    def _periods(self) -> list[_Period]:
        """Periods with their start and duration in seconds (5.3.2.1), None when unknown."""
        elements = _children(self.root, "Period")
        total = self._duration(self.root, "mediaPresentationDuration", "MPD")
        starts: list[Fraction | None] = []
        own: list[Fraction | None] = []
        labels: list[str] = []
        for position, element in enumerate(elements):
            label = element.get("id") or str(position)
            where = f'Period "{label}"'
            start = self._duration(element, "start", where)
            duration = self._duration(element, "duration", where)
            if start is None:
                if position == 0 and not self.dynamic:
                    start = Fraction(0)
                elif position and starts[-1] is not None and own[-1] is not None:
                    start = starts[-1] + own[-1]
            starts.append(start)
            own.append(duration)
            labels.append(label)
        periods = []
        for position, element in enumerate(elements):
            start, duration = starts[position], own[position]
            if duration is None and start is not None:
                following = starts[position + 1] if position + 1 < len(elements) else None
                if following is not None:
                    duration = following - start
                elif position + 1 == len(elements) and total is not None:
                    duration = total - start
            if duration is not None and duration < 0:
                raise self.naming.error(f'Period "{labels[position]}"', "negative duration")
            periods.append(_Period(element, labels[position], start, duration))
        return periods

    # -- attribute parsing -------------------------------------------------------

    def _duration(self, element: ET.Element, name: str, where: str) -> Fraction | None:
        text = element.get(name)
        if text is None:
            return None
        import isodate

        try:
            value = isodate.parse_duration(text.strip())
        except (isodate.ISO8601Error, ValueError):
            raise self.naming.error(
                where, f"@{name}={text!r} is not an ISO 8601 duration"
            ) from None
        if isinstance(value, isodate.Duration):
            # Years and months have no fixed length; no MPD writer uses them.
            raise self.naming.error(where, f"@{name}={text!r} uses years or months")
        seconds = _seconds(value)
        if seconds < 0:
            raise self.naming.error(where, f"@{name}={text!r} is negative")
        return seconds

    def _int(
        self, attributes: dict[str, str], name: str, where: str, default: int, minimum: int = 0
    ) -> int:
        text = attributes.get(name)
        if text is None:
            return default
        if _INTEGER.fullmatch(text) is None or int(text) < minimum:
            raise self.naming.error(where, f"@{name}={text!r} is not an integer >= {minimum}")
        return int(text)

    # -- one Representation -----------------------------------------------------------

    def _representation(
        self,
        period: _Period,
        levels: Sequence[ET.Element],
        base: str,
        where: str,
        name: str,
    ) -> None:
        kind: str | None = None
        for level in reversed(levels):  # the most specific level that has segment info
            kind = next((k for k in _SEGMENT_INFO if _child(level, k) is not None), None)
            if kind is not None:
                break
        chain: list[ET.Element] = []
        if kind is not None:
            chain = [c for c in (_child(level, kind) for level in levels) if c is not None]
        attributes: dict[str, str] = {}
        for element in chain:  # 5.3.9.1: lower levels override attributes of higher ones
            attributes.update(element.attrib)

        def inherited(child_name: str) -> ET.Element | None:
            for element in reversed(chain):
                found = _child(element, child_name)
                if found is not None:
                    return found
            return None

        remote = next((e for e in chain if e.get(_XLINK_HREF) is not None), None)
        if remote is not None and kind is not None:
            self._external(remote, base, f"{kind} of {where}")
            return
        representation = levels[-1]
        rep_id = representation.get("id")
        bandwidth = representation.get("bandwidth")
        segment_where = f"{kind} of {where}" if kind else where
        resolver = Resolver(base, self.hosts)
        inits: list[str] = []
        segments: Iterator[_Segment]
        if kind == "SegmentTemplate":
            inits, segments = self._template(
                period, attributes, inherited, segment_where, rep_id, bandwidth
            )
        elif kind == "SegmentList":
            # Without @sourceURL the Initialization is a byte range of the BaseURL file.
            file_base = not base.endswith("/") and base != self.document_base
            inits = [ref for ref in self._initialization(inherited) if ref or file_base]
            segment_urls = [
                element for element in reversed(chain) if _children(element, "SegmentURL")
            ][:1]
            entries = _children(segment_urls[0], "SegmentURL") if segment_urls else []
            if not entries:
                raise self.naming.error(segment_where, "no SegmentURL")
            timescale = self._int(attributes, "timescale", segment_where, 1, 1)
            seconds = self._segment_seconds(attributes, timescale, segment_where)
            self._check_limit(len(inits) + len(entries), where)
            segments = (_Segment(entry.get("media", ""), seconds) for entry in entries)
        else:
            # SegmentBase, or no segment information: the BaseURL is the one media file.
            if base.endswith("/") or base == self.document_base:
                raise self.naming.error(
                    where,
                    "no segment addressing (no SegmentTemplate, SegmentList or SegmentBase,"
                    " and no BaseURL naming the media file)",
                )
            # An Initialization without @sourceURL is a byte range of the media file itself.
            inits = [ref for ref in self._initialization(inherited) if ref] if kind else []
            self._check_limit(len(inits) + 1, where)
            duration = float(period.duration) if period.duration is not None else None
            segments = iter([_Segment("", duration)])
        self._emit(resolver, name, inits, segments)

    def _initialization(self, inherited: Callable[[str], ET.Element | None]) -> list[str]:
        """Initialization and RepresentationIndex files (the BaseURL itself when no sourceURL)."""
        refs = []
        for child_name in ("Initialization", "RepresentationIndex"):
            element = inherited(child_name)
            if element is not None:
                refs.append(element.get("sourceURL", ""))
        return refs

    def _segment_seconds(
        self, attributes: dict[str, str], timescale: int, where: str
    ) -> float | None:
        if "duration" not in attributes:
            return None
        return self._int(attributes, "duration", where, 0, 1) / timescale

    def _template(
        self,
        period: _Period,
        attributes: dict[str, str],
        inherited: Callable[[str], ET.Element | None],
        where: str,
        rep_id: str | None,
        bandwidth: str | None,
    ) -> tuple[list[str], Iterator[_Segment]]:
        naming = self.naming
        inits: list[str] = []
        if "initialization" in attributes:
            init = _Template(
                attributes["initialization"], where, naming, rep_id, bandwidth,
                allow_number_time=False,
            )  # fmt: skip
            inits.append(init.render())
        else:
            # Segments are separate files here: an Initialization needs its own @sourceURL.
            inits = [ref for ref in self._initialization(inherited) if ref]
        if "index" in attributes:
            index = _Template(
                attributes["index"], where, naming, rep_id, bandwidth, allow_number_time=False
            )
            inits.append(index.render())
        if "media" not in attributes:
            raise naming.error(where, "no @media")
        media = _Template(attributes["media"], where, naming, rep_id, bandwidth)
        timescale = self._int(attributes, "timescale", where, 1, 1)
        offset = self._int(attributes, "presentationTimeOffset", where, 0)
        start_number = self._int(attributes, "startNumber", where, 1)
        end_number = (
            self._int(attributes, "endNumber", where, 0) if "endNumber" in attributes else None
        )
        timeline = inherited("SegmentTimeline")
        if timeline is not None:
            runs = self._timeline(timeline, period, timescale, offset, start_number, where)
            if end_number is not None:
                runs = _cut_at(runs, end_number)
            count = sum(run.count for run in runs)
            self._check_limit(len(inits) + count, where)
            return inits, _timeline_segments(media, runs, timescale)
        if "duration" in attributes:
            duration = self._int(attributes, "duration", where, 0, 1)
            if self.dynamic:
                # Live: segments exist by the wall clock, not by a list; none is listed.
                return inits, iter(())
            if period.duration is not None:
                count = math.ceil(period.duration * timescale / duration)
                if end_number is not None:
                    count = min(count, end_number - start_number + 1)
            elif end_number is not None:
                count = end_number - start_number + 1
            else:
                raise naming.error(
                    where, "the Period's duration is unknown, so @duration gives no count"
                )
            count = max(count, 0)
            self._check_limit(len(inits) + count, where)
            seconds = duration / timescale
            return inits, (
                _Segment(media.render(start_number + i, offset + i * duration), seconds)
                for i in range(count)
            )
        # 5.3.9.2: neither @duration nor a SegmentTimeline: one segment for the Period.
        self._check_limit(len(inits) + 1, where)
        whole = float(period.duration) if period.duration is not None else None
        return inits, iter([_Segment(media.render(start_number, offset), whole)])

    def _timeline(
        self,
        timeline: ET.Element,
        period: _Period,
        timescale: int,
        offset: int,
        start_number: int,
        where: str,
    ) -> list[_Run]:
        """The S elements as runs (5.3.9.6), counted before anything is generated."""
        where = f"SegmentTimeline of {where}"
        entries = _children(timeline, "S")
        runs: list[_Run] = []
        # @t of the first S defaults to zero, later ones continue the previous run.
        time, number, listed = 0, start_number, 0
        for position, entry in enumerate(entries):
            attributes = dict(entry.attrib)
            time = self._int(attributes, "t", where, time)
            number = self._int(attributes, "n", where, number)
            d = self._int(attributes, "d", where, 0, 1) if "d" in attributes else None
            if d is None:
                raise self.naming.error(where, f"S element {position + 1} has no @d")
            repeat = self._int(attributes, "r", where, 0, -1)
            end: Fraction | int
            if repeat >= 0:
                count = repeat + 1
            else:
                following = entries[position + 1].get("t") if position + 1 < len(entries) else None
                if following is not None:
                    end = self._int({"t": following}, "t", where, 0)
                elif position + 1 < len(entries):
                    raise self.naming.error(
                        where, f"S element {position + 1} has r=-1 but the next S has no @t"
                    )
                elif self.dynamic:
                    end = time + d  # live: only what is listed, until the next MPD update
                elif period.duration is not None:
                    end = offset + period.duration * timescale
                else:
                    raise self.naming.error(
                        where, "r=-1 runs to the end of a Period whose duration is unknown"
                    )
                count = max(math.ceil((end - time) / d), 0)
            listed += count
            self._check_limit(listed, where)
            runs.append(_Run(time, d, count, number))
            time += d * count
            number += count
        return runs

    def _check_limit(self, adding: int, where: str) -> None:
        """Checked before a Representation's segments are generated, so memory stays bounded."""
        if self.total + adding > self.max_urls:
            raise UrlLimitExceeded(
                self.url,
                f"{where} takes the video past {self.max_urls:,} URLs"
                f" ({LIMIT_SETTING}); nothing of it was queued",
            )

    def _emit(
        self, resolver: Resolver, name: str, inits: list[str], segments: Iterator[_Segment]
    ) -> None:
        output = resolver.output
        append = self.urls.append
        skip = self.skip
        last = ""
        added = 0
        for ref in inits:
            try:
                url = output(ref)
            except UnusableUrl as exc:
                skip(exc.url, exc.reason)
                continue
            if url != last:
                append(url, UrlKind.INIT, name, -1, None)
                added += 1
                last = url
        kind = UrlKind.SEGMENT
        index = 0
        for segment in segments:
            try:
                url = output(segment.ref)
            except UnusableUrl as exc:
                skip(exc.url, exc.reason)
                continue
            if url != last:  # byte ranges of one file: one URL
                append(url, kind, name, index, segment.duration)
                added += 1
                index += 1
                last = url
        self.total += added


def _cut_at(runs: list[_Run], end_number: int) -> list[_Run]:
    """Runs without the segments numbered past ``end_number``."""
    kept = []
    for run in runs:
        count = min(run.count, end_number - run.n + 1)
        if count > 0:
            kept.append(_Run(run.t, run.d, count, run.n))
    return kept


def _timeline_segments(media: _Template, runs: list[_Run], timescale: int) -> Iterator[_Segment]:
    render = media.render
    for run in runs:
        seconds = run.d / timescale
        for i in range(run.count):
            yield _Segment(render(run.n + i, run.t + i * run.d), seconds)
