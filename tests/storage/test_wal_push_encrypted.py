"""``wal-push`` / ``wal-fetch`` with an encrypting repository, as PostgreSQL runs them: the
pushing host holds only the recipient; fetching needs the identity; a push interrupted before
its index completes without one; plaintext segments from before encryption stay fetchable."""

from __future__ import annotations

import json
from pathlib import Path

from pitr.crypt.age import Identity

from .test_wal_push import SEGMENT, Repo, segment

INDEX = f"main/logs/00000001/0000000100000000/{SEGMENT}.json"


def configure(repo: Repo, tmp_path: Path, recipient: str | None, identity: Path | None) -> None:
    """The repository at ``tmp_path/repo``: encrypting to ``recipient`` when given."""
    body = f'url = "file://{tmp_path}/repo"\n'
    if recipient:
        body += f'encryption = "age"\nrecipients = ["{recipient}"]\n'
    if identity:
        body += f'identity_file = "{identity}"\n'
    text = repo.config.read_text()
    repo.config.write_text(f"[repository]\n{body}" + text[text.index("[instances") :])


def test_push_without_identity_fetch_with_it(tmp_path: Path) -> None:
    identity = Identity.generate()
    key_file = tmp_path / "identity.txt"
    key_file.write_text(f"{identity}\n")
    repo = Repo(tmp_path, f'url = "file://{tmp_path}/repo"', {})
    configure(repo, tmp_path, str(identity.recipient()), None)
    wal = segment(tmp_path / "pg_wal")
    done = repo.pitr("wal-push", str(wal))
    assert done.returncode == 0, done.stderr
    stored = tmp_path / "repo" / INDEX.replace(".json", ".zst.age")
    assert stored.read_bytes().startswith(b"age-encryption.org/v1\n")
    assert json.loads((tmp_path / "repo" / INDEX).read_text())["object"]["encryption"] == "age"

    (tmp_path / "repo" / INDEX).unlink()  # interrupted between object and index
    again = repo.pitr("wal-push", str(wal))
    assert again.returncode == 0, again.stderr
    assert "replaced" in again.stderr and (tmp_path / "repo" / INDEX).exists()

    refused = repo.pitr("wal-fetch", SEGMENT, str(tmp_path / "out"))
    assert refused.returncode == 2 and "identity_file" in refused.stderr
    assert not (tmp_path / "out").exists()
    configure(repo, tmp_path, str(identity.recipient()), key_file)
    fetched = repo.pitr("wal-fetch", SEGMENT, str(tmp_path / "out"))
    assert fetched.returncode == 0, fetched.stderr
    assert (tmp_path / "out").read_bytes() == wal.read_bytes()
    assert str(identity) not in refused.stderr + fetched.stderr + again.stderr


def test_plaintext_segments_stay_fetchable_once_encryption_is_on(tmp_path: Path) -> None:
    identity = Identity.generate()
    key_file = tmp_path / "identity.txt"
    key_file.write_text(f"{identity}\n")
    repo = Repo(tmp_path, f'url = "file://{tmp_path}/repo"', {})
    wal = segment(tmp_path / "pg_wal")
    assert repo.pitr("wal-push", str(wal)).returncode == 0  # plaintext
    configure(repo, tmp_path, str(identity.recipient()), key_file)
    again = repo.pitr("wal-push", "--json", str(wal))
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["archived"] is False  # the same segment, already there
    assert not list((tmp_path / "repo").rglob("*.age"))  # and no second copy of it left
    fetched = repo.pitr("wal-fetch", SEGMENT, str(tmp_path / "out"))
    assert fetched.returncode == 0, fetched.stderr
    assert (tmp_path / "out").read_bytes() == wal.read_bytes()


def test_a_malformed_recipient_fails_the_push_and_stores_nothing(tmp_path: Path) -> None:
    """The fast form leaves the recipients to the keyring it builds (``parse_keys=False``, so
    that they are parsed once): the error is the one every other command gives, exit 2, and
    nothing reaches the repository."""
    recipient = str(Identity.generate().recipient())
    damaged = recipient[:-1] + ("q" if recipient[-1] != "q" else "p")
    repo = Repo(tmp_path, f'url = "file://{tmp_path}/repo"', {})
    configure(repo, tmp_path, damaged, None)
    wal = segment(tmp_path / "pg_wal")
    for args in (["wal-push", str(wal)], ["wal-push", "--json", str(wal)]):  # fast, full CLI
        done = repo.pitr(*args)
        assert done.returncode == 2, done.stderr
        assert "[repository] recipients[0]: not an age recipient" in done.stderr
        assert damaged not in done.stderr
    assert not [p for p in (tmp_path / "repo").rglob("*") if p.is_file()]
