"""The file driver when root and the database's OS user share one repository."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pitr.errors import RepositoryError
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


_names = st.text(alphabet="ab-./0~", min_size=1, max_size=4).filter(
    lambda s: (
        all(p not in ("", ".", "..") for p in s.split("/"))
        and not s.startswith("/")
        and not s.endswith("/")
    )
)


@settings(max_examples=60, deadline=None)
@given(
    st.sets(_names, max_size=12),
    st.text(alphabet="ab-./0~", max_size=5),
    st.sampled_from(["", "a", "a/", "a/b", "ab", "b/", "a-"]),
)
def test_listing_order_and_start_after_match_plain_sorting(
    keys: set[str], after: str, prefix: str
) -> None:
    """Keys sort as strings, whatever the directory structure ("a-b" < "a/c" < "a0")."""
    with tempfile.TemporaryDirectory() as tmp:
        storage = LocalStorage(tmp)
        stored = set()
        for key in sorted(keys):
            try:
                storage.put_bytes(key, b"x")
                stored.add(key)
            except RepositoryError:
                continue  # a key that is a directory of another one
        listed = [i.key for i in storage.list(prefix, start_after=after or None)]
        expected = sorted(k for k in stored if k.startswith(prefix) and k > after)
        assert listed == expected


def test_listing_prefixes_cannot_leave_the_repository(tmp_path: Path) -> None:
    storage = LocalStorage(str(tmp_path / "repo"))
    for prefix in ["/", "//", "/etc/", "../", "a/../", "a//b", "./"]:
        with pytest.raises(RepositoryError):
            list(storage.list(prefix))
        with pytest.raises(RepositoryError):
            storage.list_prefixes(prefix)
