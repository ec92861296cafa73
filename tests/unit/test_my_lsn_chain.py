"""The LSN-chain checks made before ``--prepare --incremental-dir`` (which damages the full's
directory when the differential was taken against another base): from the manifests, and
from the checkpoints files of what was extracted."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pitr.catalog.model import Backup
from pitr.engines.mysql.restore import check_extracted, check_lsn_chain
from pitr.errors import FormatError, RepositoryError

T = datetime(2026, 3, 1, tzinfo=UTC)


def backup(bid: str, parent: str | None, **meta: Any) -> Backup:
    kind = "diff" if parent else "full"
    return Backup(bid, kind, parent, "main", "mariadb", "1", T, T, "x:4", "x:4", 4, 4, "S", (),
                  engine_meta=meta)  # fmt: skip


FULL = backup("F", None, from_lsn=0, to_lsn=5000)
DIFF = backup("D", "F", from_lsn=5000, to_lsn=9000)


def checkpoints(directory: Path, kind: str, from_lsn: int, to_lsn: int) -> Path:
    directory.mkdir()
    (directory / "xtrabackup_checkpoints").write_text(
        f"backup_type = {kind}\nfrom_lsn = {from_lsn}\nto_lsn = {to_lsn}\nlast_lsn = {to_lsn}\n"
    )
    return directory


def test_a_full_alone_or_a_matching_differential_passes() -> None:
    check_lsn_chain(FULL, None)
    check_lsn_chain(FULL, DIFF)


@pytest.mark.parametrize(
    "diff",
    [
        backup("D", "F", from_lsn=4999, to_lsn=9000),  # taken against another base
        backup("D", "OTHER", from_lsn=5000, to_lsn=9000),  # another full's differential
        backup("D", "F", to_lsn=9000),  # no from_lsn recorded
    ],
)
def test_a_differential_not_starting_at_the_full_is_refused(diff: Backup) -> None:
    with pytest.raises(RepositoryError) as caught:
        check_lsn_chain(FULL, diff)
    assert caught.value.exit_code == 3
    assert "differential D starts at LSN" in caught.value.message
    assert "full F ends at LSN 5000" in caught.value.message
    assert "nothing was changed" in caught.value.message


def test_a_full_without_to_lsn_is_refused() -> None:
    with pytest.raises(RepositoryError, match="full F ends at LSN None"):
        check_lsn_chain(backup("F", None), DIFF)


def test_extracted_checkpoints_that_agree(tmp_path: Path) -> None:
    full = checkpoints(tmp_path / "full", "full-backuped", 0, 5000)
    diff = checkpoints(tmp_path / "diff", "incremental", 5000, 9000)
    check_extracted(full, diff, FULL, DIFF)


@pytest.mark.parametrize(
    ("full_to", "diff_from"),
    [
        (5000, 6100),  # the differential's own checkpoints name another base
        (5200, 5200),  # they agree with each other, but not with the full's manifest
    ],
)
def test_extracted_checkpoints_that_disagree_are_refused(
    tmp_path: Path, full_to: int, diff_from: int
) -> None:
    full = checkpoints(tmp_path / "full", "full-backuped", 0, full_to)
    diff = checkpoints(tmp_path / "diff", "incremental", diff_from, 9000)
    with pytest.raises(RepositoryError) as caught:
        check_extracted(full, diff, FULL, DIFF)
    assert caught.value.exit_code == 3
    assert caught.value.message == (
        f"differential D starts at LSN {diff_from}, but the extracted full F ends at LSN "
        f"{full_to}: not applying it"
    )


def test_an_extracted_differential_without_checkpoints_is_refused(tmp_path: Path) -> None:
    full = checkpoints(tmp_path / "full", "full-backuped", 0, 5000)
    (tmp_path / "diff").mkdir()
    with pytest.raises(FormatError, match="checkpoints: missing") as caught:
        check_extracted(full, tmp_path / "diff", FULL, DIFF)
    assert caught.value.exit_code == 3
