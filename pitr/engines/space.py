"""Disk space for ``restore --to`` and ``recover``: refused up front when the manifests say the
restored files cannot fit, and a filesystem that fills up anyway reported as such (one line,
exit 6), never as an unexpected error."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from pitr.domain.sizes import human_bytes
from pitr.errors import PitrError, PreconditionFailed

NO_SPACE = os.strerror(errno.ENOSPC)  # "No space left on device", as tools print it
LOW_SPACE = 64 << 20  # less free than this: the file system is full for a restore
MARGIN = 1.05  # file system overhead (blocks, directories) over the bytes restored


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing parent: where a new directory's bytes will go."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def require_space(needs: Mapping[Path, int], what: str) -> None:
    """Refuse (exit 6, nothing written) when the bytes ``needs`` puts in each directory do not
    fit in the free space of its file system; directories on one file system add up."""
    by_device: dict[int, tuple[Path, int]] = {}
    for directory, size in needs.items():
        where = _existing(directory)
        device = where.stat().st_dev
        first, total = by_device.get(device, (directory, 0))
        by_device[device] = (first, total + size)
    for first, total in by_device.values():
        needed = int(total * MARGIN)
        free = shutil.disk_usage(_existing(first)).free
        if free < needed:
            raise PreconditionFailed(
                f"not enough space for {what} in {first}: it needs about {human_bytes(needed)}, "
                f"its file system has {human_bytes(free)} free; nothing was written",
                hint="free space there, or choose a directory on a larger file system",
            )


def ran_out_of_space(exc: BaseException) -> bool:
    """Did ``exc`` come from a full file system (ours, or a tool's complaint)?"""
    if isinstance(exc, OSError):
        return exc.errno == errno.ENOSPC
    return isinstance(exc, PitrError) and NO_SPACE in exc.message


def nearly_full(directory: Path, below: int = LOW_SPACE) -> bool:
    """Has the file system of ``directory`` less than ``below`` bytes free? What a failure there
    most likely came from when the server, not pitr, hit it (PostgreSQL's restore_command
    failing in a full pg_wal ends replay early); ``below`` is what the failed step needed."""
    try:
        return shutil.disk_usage(_existing(directory)).free < below
    except OSError:
        return False


def removed_note(dest: Path, created: bool) -> str:
    """What a failed restore left of ``dest``, for the error message."""
    what = f"{dest} was removed" if created else f"what was restored into {dest} was removed"
    return f"{what}; the instance was not touched"


def space_error(directory: Path, what: str, outcome: str) -> PreconditionFailed:
    """The one line for a file system that filled up while ``what`` wrote into ``directory``;
    ``outcome`` says what became of it and what was kept."""
    return PreconditionFailed(
        f"the file system of {directory} ran out of space during {what}; {outcome}",
        hint="free space there (or choose a larger file system) and run it again",
    )
