"""The file driver when root and the database's OS user share one repository."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

from pitr.storage.local import LocalStorage


def test_root_writes_as_the_repository_owner(public_tmp_dir: Path) -> None:
    assert os.geteuid() == 0, "the suite runs as root (PostgreSQL tests need runuser)"
    postgres = pwd.getpwnam("postgres")
    root = public_tmp_dir / "repo"
    root.mkdir()
    os.chown(root, postgres.pw_uid, postgres.pw_gid)
    storage = LocalStorage(str(root))
    storage.put_bytes("main/logs/00000001/segment", b"x")
    for path in [root / "main", root / "main/logs/00000001", root / "main/logs/00000001/segment"]:
        st = path.stat()
        assert (st.st_uid, st.st_gid) == (postgres.pw_uid, postgres.pw_gid), path
    # ... so the owner can add next to it, replace it and delete it.
    code = (
        "from pitr.storage.local import LocalStorage; "
        f"s = LocalStorage({str(root)!r}); "
        "s.put_bytes('main/logs/00000001/other', b'y'); "
        "s.put_bytes('main/logs/00000001/segment', b'z'); "
        "s.delete('main/logs/00000001/other')"
    )
    subprocess.run(["runuser", "-u", "postgres", "--", sys.executable, "-c", code], check=True)
    assert storage.get_bytes("main/logs/00000001/segment") == b"z"


def test_a_root_owned_repository_stays_root_owned(tmp_path: Path) -> None:
    storage = LocalStorage(str(tmp_path / "repo"))
    storage.put_bytes("a/b", b"x")
    assert (tmp_path / "repo" / "a" / "b").stat().st_uid == 0
