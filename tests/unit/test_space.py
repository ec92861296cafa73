"""Disk space: the up-front refusal, and how a failure is recognised as a full file system when
pitr or the server it started ran out of room (the one line, exit 6, a DBA should see)."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pytest

from pitr.engines.mysql import replay
from pitr.engines.space import NO_SPACE, nearly_full, ran_out_of_space, require_space
from pitr.errors import PreconditionFailed, ToolFailed


def free(path: Path) -> int:
    return shutil.disk_usage(path).free


def test_more_than_is_free_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    dest = tmp_path / "new" / "restored"
    with pytest.raises(PreconditionFailed, match=f"not enough space for the restore in {dest}"):
        require_space({dest: free(tmp_path) + (1 << 40)}, "the restore")
    assert not dest.parent.exists()
    require_space({dest: 1 << 20}, "the restore")


def test_directories_on_one_file_system_add_up(tmp_path: Path) -> None:
    most = free(tmp_path) * 6 // 10  # fits once, not twice
    require_space({tmp_path / "a": most}, "the restore")
    with pytest.raises(PreconditionFailed):
        require_space({tmp_path / "a": most, tmp_path / "b": most}, "the restore")


def test_a_full_file_system_is_recognised_from_the_error() -> None:
    assert ran_out_of_space(OSError(errno.ENOSPC, NO_SPACE))
    assert not ran_out_of_space(OSError(errno.EACCES, "Permission denied"))
    assert ran_out_of_space(ToolFailed(f"tar: write error ({NO_SPACE})"))
    assert not ran_out_of_space(ToolFailed("tar: broken pipe"))


def test_nearly_full_measures_against_what_the_step_needed(tmp_path: Path) -> None:
    below_free = free(tmp_path) + (1 << 40)
    assert nearly_full(tmp_path / "not" / "yet", below=below_free)  # its nearest parent counts
    assert not nearly_full(tmp_path, below=0)


@pytest.mark.parametrize(
    "said",
    ["[ERROR] InnoDB: Cannot resize ib_logfile101: failed with error 28",
     "[ERROR] mariadbd: Error writing file 'x' (Errcode: 28 \"No space left on device\")",
     f"[ERROR] write failed: {NO_SPACE}"],
)  # fmt: skip
def test_a_server_log_that_says_so(tmp_path: Path, said: str) -> None:
    log = tmp_path / replay.SERVER_LOG
    log.write_text(f"[Note] starting\n{said}\n[Note] Aborting\n")
    assert replay._why_not_started(log, tmp_path).endswith(f"[Note] Aborting ({NO_SPACE})")


def test_a_server_that_failed_for_another_reason(tmp_path: Path) -> None:
    log = tmp_path / replay.SERVER_LOG
    log.write_text("[ERROR] Can't find messagefile\n")
    assert free(tmp_path) > replay.REDO_LOG  # room for its redo log: another cause
    assert replay._why_not_started(log, tmp_path) == "[ERROR] Can't find messagefile"


def test_an_empty_log_and_no_room_for_the_redo_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk full when the server starts can leave its log empty; the server then frees what
    it had allocated, so the free space afterwards is measured against its redo log."""
    log = tmp_path / replay.SERVER_LOG
    log.write_text("")
    monkeypatch.setattr(replay, "REDO_LOG", free(tmp_path) + (1 << 30))
    assert replay._why_not_started(log, tmp_path) == f"its log is empty ({NO_SPACE})"
    assert ran_out_of_space(ToolFailed(f"exited 1 while starting: its log is empty ({NO_SPACE})"))
