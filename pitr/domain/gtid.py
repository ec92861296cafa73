"""GTIDs of both flavours as immutable values: parsing, canonical text form, ordering, set algebra.

MariaDB: a GTID is ``domain-server-seq`` (:class:`MariaGtid`); a replication *position* holds at
most one GTID per domain (:class:`MariaGtidPosition`, e.g. ``0-1-42,1-2-7``).

MySQL: a GTID is ``uuid[:tag]:gno`` (:class:`MysqlGtid`); a GTID *set* maps each ``(uuid, tag)``
to disjoint closed intervals of gnos (:class:`MysqlGtidSet`, e.g. ``uuid:1-5:7,uuid:tag:1-2``).

Malformed text raises :class:`pitr.errors.UsageError` with a one-line message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from pitr.errors import UsageError

_U32 = 2**32 - 1
_U64 = 2**64 - 1
_GNO_MAX = 2**63 - 1

_MARIA_RE = re.compile(r"(\d{1,10})-(\d{1,10})-(\d{1,20})")
_HEX = "[0-9a-fA-F]"
_UUID_RE = re.compile(f"{_HEX}{{8}}-?{_HEX}{{4}}-?{_HEX}{{4}}-?{_HEX}{{4}}-?{_HEX}{{12}}")
_TAG_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")
_INTERVAL_RE = re.compile(r"(\d{1,19})(?:-(\d{1,19}))?")


# ---------------------------------------------------------------------------------------------
# MariaDB
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MariaGtid:
    """One MariaDB GTID. Ordering compares (domain, seq, server): meaningful within a domain."""

    domain: int
    server: int
    seq: int

    def __post_init__(self) -> None:
        if not (0 <= self.domain <= _U32 and 0 <= self.server <= _U32 and 0 <= self.seq <= _U64):
            raise UsageError(f"MariaDB GTID out of range: {self.domain}-{self.server}-{self.seq}")

    @classmethod
    def parse(cls, text: str) -> MariaGtid:
        m = _MARIA_RE.fullmatch(text.strip())
        if m is None:
            raise UsageError(f"not a MariaDB GTID (domain-server-seq): {text!r}")
        return cls(int(m[1]), int(m[2]), int(m[3]))

    def __str__(self) -> str:
        return f"{self.domain}-{self.server}-{self.seq}"

    def _key(self) -> tuple[int, int, int]:
        return (self.domain, self.seq, self.server)

    def __lt__(self, other: MariaGtid) -> bool:
        return self._key() < other._key()

    def __le__(self, other: MariaGtid) -> bool:
        return self._key() <= other._key()

    def __gt__(self, other: MariaGtid) -> bool:
        return self._key() > other._key()

    def __ge__(self, other: MariaGtid) -> bool:
        return self._key() >= other._key()


@dataclass(frozen=True, slots=True)
class MariaGtidPosition:
    """A MariaDB GTID position: at most one GTID per domain, kept sorted by domain.

    Positions are partially ordered by :meth:`covers` (``a >= b`` means a covers b).
    """

    gtids: tuple[MariaGtid, ...] = ()

    def __post_init__(self) -> None:
        domains = [g.domain for g in self.gtids]
        if len(set(domains)) != len(domains):
            raise UsageError(f"MariaDB GTID position has two GTIDs for one domain: {self}")
        if domains != sorted(domains):
            object.__setattr__(self, "gtids", tuple(sorted(self.gtids, key=lambda g: g.domain)))

    @classmethod
    def parse(cls, text: str) -> MariaGtidPosition:
        """Parse ``0-1-42,1-2-7`` (empty text is the empty position)."""
        text = text.strip()
        if not text:
            return cls()
        return cls(tuple(MariaGtid.parse(part) for part in text.split(",")))

    @classmethod
    def from_gtids(cls, gtids: Iterable[MariaGtid]) -> MariaGtidPosition:
        """The position reached after ``gtids`` in that order (a later GTID replaces its domain's).

        Use for a binlog's events in file order; for an unordered list (a GTID_LIST event,
        which keeps one entry per domain *and server*) use :meth:`from_state`.
        """
        by_domain: dict[int, MariaGtid] = {}
        for g in gtids:
            by_domain[g.domain] = g
        return cls(tuple(by_domain.values()))

    @classmethod
    def from_state(cls, gtids: Iterable[MariaGtid]) -> MariaGtidPosition:
        """The position of a binlog state: the highest seq of each domain."""
        by_domain: dict[int, MariaGtid] = {}
        for g in gtids:
            cur = by_domain.get(g.domain)
            if cur is None or g.seq > cur.seq:
                by_domain[g.domain] = g
        return cls(tuple(by_domain.values()))

    def __str__(self) -> str:
        return ",".join(str(g) for g in self.gtids)

    def domains(self) -> tuple[int, ...]:
        return tuple(g.domain for g in self.gtids)

    def get(self, domain: int) -> MariaGtid | None:
        for g in self.gtids:
            if g.domain == domain:
                return g
        return None

    def contains(self, gtid: MariaGtid) -> bool:
        """True when ``gtid`` is at or before this position in its domain (seq comparison)."""
        cur = self.get(gtid.domain)
        return cur is not None and gtid.seq <= cur.seq

    def __contains__(self, gtid: object) -> bool:
        return isinstance(gtid, MariaGtid) and self.contains(gtid)

    def advance(self, gtid: MariaGtid) -> MariaGtidPosition:
        """The position after applying ``gtid``: its domain's entry becomes ``gtid``."""
        rest = tuple(g for g in self.gtids if g.domain != gtid.domain)
        return MariaGtidPosition((*rest, gtid))

    def covers(self, other: MariaGtidPosition) -> bool:
        """True when every domain of ``other`` is here with a seq at least as high."""
        return all(self.contains(g) for g in other.gtids)

    def is_empty(self) -> bool:
        return not self.gtids

    def __ge__(self, other: MariaGtidPosition) -> bool:
        return self.covers(other)

    def __le__(self, other: MariaGtidPosition) -> bool:
        return other.covers(self)

    def __gt__(self, other: MariaGtidPosition) -> bool:
        return self.covers(other) and self != other

    def __lt__(self, other: MariaGtidPosition) -> bool:
        return other.covers(self) and self != other


# ---------------------------------------------------------------------------------------------
# MySQL
# ---------------------------------------------------------------------------------------------

Interval = tuple[int, int]
"""A closed interval of gnos ``(first, last)``."""
Source = tuple[str, str]
"""``(uuid, tag)``; ``tag`` is ``""`` for untagged GTIDs."""


def normalize_uuid(text: str) -> str:
    """``3E11FA4771CA11E19E33C80AA9429562`` or dashed, any case → dashed lower case."""
    if _UUID_RE.fullmatch(text) is None:
        raise UsageError(f"not a server UUID: {text!r}")
    h = text.replace("-", "").lower()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def normalize_tag(text: str) -> str:
    if _TAG_RE.fullmatch(text) is None:
        raise UsageError(f"not a GTID tag ([a-z_][a-z0-9_]{{0,31}}): {text!r}")
    return text.lower()


@dataclass(frozen=True, slots=True)
class MysqlGtid:
    """One MySQL GTID ``uuid[:tag]:gno``."""

    uuid: str
    tag: str
    gno: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "uuid", normalize_uuid(self.uuid))
        if self.tag:
            object.__setattr__(self, "tag", normalize_tag(self.tag))
        if not 1 <= self.gno <= _GNO_MAX:
            raise UsageError(f"GTID number out of range: {self.gno}")

    @classmethod
    def parse(cls, text: str) -> MysqlGtid:
        parts = text.strip().split(":")
        if len(parts) == 2:
            uuid, tag, gno = parts[0], "", parts[1]
        elif len(parts) == 3:
            uuid, tag, gno = parts
        else:
            raise UsageError(f"not a MySQL GTID (uuid[:tag]:number): {text!r}")
        if not gno.isdigit() or len(gno) > 19:
            raise UsageError(f"not a MySQL GTID (uuid[:tag]:number): {text!r}")
        return cls(uuid, tag, int(gno))

    def __str__(self) -> str:
        if self.tag:
            return f"{self.uuid}:{self.tag}:{self.gno}"
        return f"{self.uuid}:{self.gno}"


def _merge(intervals: Iterable[Interval]) -> tuple[Interval, ...]:
    """Sort and merge overlapping or adjacent closed intervals."""
    out: list[list[int]] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return tuple((a, b) for a, b in out)


def _subtract(xs: tuple[Interval, ...], ys: tuple[Interval, ...]) -> tuple[Interval, ...]:
    out: list[Interval] = []
    j = 0
    for a, b in xs:
        while j < len(ys) and ys[j][1] < a:
            j += 1
        k = j
        start = a
        while k < len(ys) and ys[k][0] <= b:
            ya, yb = ys[k]
            if ya > start:
                out.append((start, ya - 1))
            start = max(start, yb + 1)
            k += 1
        if start <= b:
            out.append((start, b))
    return tuple(out)


def _intersect(xs: tuple[Interval, ...], ys: tuple[Interval, ...]) -> tuple[Interval, ...]:
    out: list[Interval] = []
    i = j = 0
    while i < len(xs) and j < len(ys):
        a = max(xs[i][0], ys[j][0])
        b = min(xs[i][1], ys[j][1])
        if a <= b:
            out.append((a, b))
        if xs[i][1] < ys[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


@dataclass(frozen=True, slots=True)
class MysqlGtidSet:
    """A normalised MySQL GTID set: sources sorted, intervals merged, no empty sources."""

    sources: tuple[tuple[Source, tuple[Interval, ...]], ...] = ()

    @classmethod
    def from_mapping(cls, mapping: Mapping[Source, Iterable[Interval]]) -> MysqlGtidSet:
        combined: dict[Source, list[Interval]] = {}
        for (uuid, tag), ivs in mapping.items():
            src = (normalize_uuid(uuid), normalize_tag(tag) if tag else "")
            for a, b in ivs:
                if not 1 <= a <= b <= _GNO_MAX:
                    raise UsageError(f"bad GTID interval {a}-{b} for {uuid}")
                combined.setdefault(src, []).append((a, b))
        return cls(tuple(sorted((s, _merge(v)) for s, v in combined.items())))

    @classmethod
    def from_gtids(cls, gtids: Iterable[MysqlGtid]) -> MysqlGtidSet:
        mapping: dict[Source, list[Interval]] = {}
        for g in gtids:
            mapping.setdefault((g.uuid, g.tag), []).append((g.gno, g.gno))
        return cls.from_mapping(mapping)

    @classmethod
    def parse(cls, text: str) -> MysqlGtidSet:
        """Parse MySQL's text form; accepts ``uuid:1-5:7``, ``uuid:tag:1-2`` and the combined
        ``uuid:1-5:tag:1-2``, separated by commas (whitespace and newlines ignored)."""
        mapping: dict[Source, list[Interval]] = {}
        stripped = "".join(text.split())
        if not stripped:
            return cls()
        for entry in stripped.split(","):
            parts = entry.split(":")
            uuid = normalize_uuid(parts[0])
            if len(parts) < 2:
                raise UsageError(f"GTID set entry without intervals: {entry!r}")
            tag = ""
            pending_tag = False
            for part in parts[1:]:
                m = _INTERVAL_RE.fullmatch(part)
                if m is None:
                    tag = normalize_tag(part)
                    pending_tag = True
                    continue
                a = int(m[1])
                b = int(m[2]) if m[2] is not None else a
                if not 1 <= a <= b <= _GNO_MAX:
                    raise UsageError(f"bad GTID interval {part!r} in {entry!r}")
                mapping.setdefault((uuid, tag), []).append((a, b))
                pending_tag = False
            if pending_tag:
                raise UsageError(f"GTID tag without intervals in {entry!r}")
        return cls.from_mapping(mapping)

    def __str__(self) -> str:
        entries = []
        for (uuid, tag), ivs in self.sources:
            head = f"{uuid}:{tag}" if tag else uuid
            entries.append(head + "".join(f":{a}" if a == b else f":{a}-{b}" for a, b in ivs))
        return ",".join(entries)

    def _as_dict(self) -> dict[Source, tuple[Interval, ...]]:
        return dict(self.sources)

    def intervals(self, uuid: str, tag: str = "") -> tuple[Interval, ...]:
        key = (normalize_uuid(uuid), normalize_tag(tag) if tag else "")
        return self._as_dict().get(key, ())

    def is_empty(self) -> bool:
        return not self.sources

    def __iter__(self) -> Iterator[MysqlGtid]:
        """Every GTID of the set (beware: a set can hold billions)."""
        for (uuid, tag), ivs in self.sources:
            for a, b in ivs:
                for gno in range(a, b + 1):
                    yield MysqlGtid(uuid, tag, gno)

    def contains(self, gtid: MysqlGtid) -> bool:
        return any(a <= gtid.gno <= b for a, b in self._as_dict().get((gtid.uuid, gtid.tag), ()))

    def __contains__(self, gtid: object) -> bool:
        return isinstance(gtid, MysqlGtid) and self.contains(gtid)

    def add(self, gtid: MysqlGtid) -> MysqlGtidSet:
        return self | MysqlGtidSet((((gtid.uuid, gtid.tag), ((gtid.gno, gtid.gno),)),))

    def union(self, other: MysqlGtidSet) -> MysqlGtidSet:
        mapping: dict[Source, list[Interval]] = {}
        for src, ivs in (*self.sources, *other.sources):
            mapping.setdefault(src, []).extend(ivs)
        return MysqlGtidSet(tuple(sorted((s, _merge(v)) for s, v in mapping.items())))

    def difference(self, other: MysqlGtidSet) -> MysqlGtidSet:
        theirs = other._as_dict()
        out = []
        for src, ivs in self.sources:
            rest = _subtract(ivs, theirs.get(src, ()))
            if rest:
                out.append((src, rest))
        return MysqlGtidSet(tuple(out))

    def intersection(self, other: MysqlGtidSet) -> MysqlGtidSet:
        theirs = other._as_dict()
        out = []
        for src, ivs in self.sources:
            both = _intersect(ivs, theirs.get(src, ()))
            if both:
                out.append((src, both))
        return MysqlGtidSet(tuple(out))

    def issubset(self, other: MysqlGtidSet) -> bool:
        return self.difference(other).is_empty()

    def __or__(self, other: MysqlGtidSet) -> MysqlGtidSet:
        return self.union(other)

    def __sub__(self, other: MysqlGtidSet) -> MysqlGtidSet:
        return self.difference(other)

    def __and__(self, other: MysqlGtidSet) -> MysqlGtidSet:
        return self.intersection(other)

    def __le__(self, other: MysqlGtidSet) -> bool:
        return self.issubset(other)

    def __ge__(self, other: MysqlGtidSet) -> bool:
        return other.issubset(self)
