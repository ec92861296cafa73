"""PostgreSQL major versions: which ones pitr knows, what a server, a data directory, a set of
programs (``bindir``) or a backup is, and the one-line refusals when they do not match
(docs/postgresql.md, "Supported versions").

Light on imports: ``wal-push`` uses it once per segment.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from pitr import __version__
from pitr.engines import proc
from pitr.errors import FormatError, PitrError, PreconditionFailed

if TYPE_CHECKING:
    from pitr.catalog.model import Backup

#: Majors whose WAL pitr reads (see walfile.WAL_MAGIC); the test suite runs 15 to 18.
OLDEST, NEWEST = 13, 18
_TOOL_VERSION = re.compile(rb"\(PostgreSQL\) (\d+)")


def major_of(version_num: int) -> int:
    """``server_version_num`` (``180006``) → the major version (``18``)."""
    return version_num // 10000


def known(major: int) -> bool:
    return OLDEST <= major <= NEWEST


def unknown_version(what: str, major: int | str, *, wal: bool = False) -> PitrError:
    """``what`` is PostgreSQL ``major``, which this pitr does not know: what to do."""
    error: type[PitrError] = FormatError if wal else PreconditionFailed
    return error(
        f"{what} is PostgreSQL {major}, which pitr {__version__} does not support "
        f"(it knows PostgreSQL {OLDEST} to {NEWEST})",
        hint=f"install a pitr release that supports PostgreSQL {major}; until then no WAL "
        "is archived and pg_wal grows",
    )


def require_known(what: str, major: int) -> None:
    if not known(major):
        raise unknown_version(what, major)


def datadir_major(datadir: Path) -> int | None:
    """The major version in a data directory's ``PG_VERSION`` (None: unreadable or absent)."""
    try:
        text = (datadir / "PG_VERSION").read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


@cache
def tool_major(path: str) -> int:
    """The PostgreSQL major version a program belongs to (``pg_ctl --version``)."""
    done = proc.run([path, "--version"], timeout=30, check=False)
    found = _TOOL_VERSION.search(done.stdout)
    if done.returncode != 0 or found is None:
        raise PreconditionFailed(
            f"{path} --version did not say which PostgreSQL it belongs to",
            hint="set bindir to the directory holding PostgreSQL's programs",
        )
    return int(found.group(1))


def require_tool_major(path: str, major: int, what: str, bindir: str | None) -> None:
    """Refuse (exit 6) a program of another major version than ``what`` (PostgreSQL
    ``major``); ``bindir`` is what the configuration says (None: not configured)."""
    found = tool_major(path)
    if found == major:
        return
    configured = f"bindir {bindir}" if bindir else "bindir not configured"
    raise PreconditionFailed(
        f"{what} is PostgreSQL {major} but {path} is PostgreSQL {found} ({configured}); "
        "nothing was changed",
        hint=f"set bindir to PostgreSQL {major}'s programs (e.g. /usr/lib/postgresql/{major}/bin)",
    )


def require_instance_major(
    what: str, major: int, datadir: Path, tools: dict[str, str], bindir: str | None
) -> str:
    """The checks before pitr archives or backs up a server of PostgreSQL ``major``: a major
    this pitr knows, the data directory's ``PG_VERSION`` the same (when readable here) and
    every program in ``tools`` (name → path) of that major. Returns what was found."""
    require_known(what, major)
    data = datadir_major(datadir)
    if data is not None and data != major:
        raise PreconditionFailed(
            f"{what} is PostgreSQL {major} but {datadir}/PG_VERSION says {data}",
            hint="datadir must be the data directory of the server pitr connects to",
        )
    for path in tools.values():
        require_tool_major(path, major, what, bindir)
    return f"PostgreSQL {major}; programs: {', '.join(sorted(tools))} of PostgreSQL {major}"


def backup_major(backup: Backup) -> int | None:
    """The major version a backup was taken of: ``server_major``, else (older manifests) from
    ``engine_meta.server_version_num``; None when neither says."""
    if backup.server_major and backup.server_major.isdigit():
        return int(backup.server_major)
    number = backup.engine_meta.get("server_version_num")
    return major_of(int(number)) if number else None
