"""Encryption settings: recipients inline, from a file or PITR_* variables; key files' errors
name the file and line and never repeat a key; sealed documents round-trip."""

from __future__ import annotations

from pathlib import Path

import pytest
from catalogs import wal

from pitr.catalog.model import SegmentIndex, Transaction
from pitr.catalog.sealing import open_index, seal_index
from pitr.config.settings import load_settings
from pitr.crypt.age import Identity
from pitr.crypt.keyring import IdentityMissing, Keyring, keyring_of
from pitr.errors import ConfigError

BASE = '[repository]\nurl = "file:///tmp/r"\nencryption = "age"\n'


def config(tmp_path: Path, extra: str) -> str:
    path = tmp_path / "pitr.toml"
    path.write_text(BASE + extra)
    return str(path)


def test_recipients_inline_file_and_environment(tmp_path: Path) -> None:
    a, b, c = (str(Identity.generate().recipient()) for _ in range(3))
    listed = tmp_path / "recipients.txt"
    listed.write_text(f"# ops team\n\n{b}\n")
    path = config(tmp_path, f'recipients = ["{a}"]\nrecipients_file = "{listed}"\n')
    settings = load_settings(path, env={})
    assert [str(r) for r in keyring_of(settings.repository, path).recipients] == [a, b]
    settings = load_settings(path, env={"PITR_REPOSITORY_RECIPIENTS": f"{c}, {a}"})
    assert [str(r) for r in keyring_of(settings.repository, path).recipients] == [c, a, b]


def test_encryption_without_recipients_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs recipients"):
        load_settings(config(tmp_path, ""), env={})


def test_a_malformed_recipients_file_names_file_and_line(tmp_path: Path) -> None:
    listed = tmp_path / "recipients.txt"
    good = str(Identity.generate().recipient())
    listed.write_text(f"{good}\n# comment\nage1notakey\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config(tmp_path, f'recipients_file = "{listed}"\n'), env={})
    assert caught.value.exit_code == 2
    assert caught.value.message.startswith(f"{listed}:3: ")
    assert "age1notakey" not in caught.value.message


def test_a_malformed_identity_file_names_file_and_line_never_the_key(tmp_path: Path) -> None:
    secret = str(Identity.generate())
    broken = secret[:-1] + ("Q" if secret[-1] != "Q" else "P")
    path = tmp_path / "identity.txt"
    path.write_text(f"# created: today\n{broken}\n")
    keyring = Keyring((Identity.generate().recipient(),), str(path))
    with pytest.raises(ConfigError) as caught:
        keyring.identities("probe")
    assert caught.value.message.startswith(f"{path}:2: ")
    assert broken not in caught.value.message and broken[20:40] not in caught.value.message


def test_reading_without_identity_names_the_setting() -> None:
    keyring = Keyring((Identity.generate().recipient(),))
    with pytest.raises(IdentityMissing, match="identity_file"):
        keyring.identities("main/logs/00000001/x.zst.age")


def test_sse_settings(tmp_path: Path) -> None:
    s3 = '[repository]\nurl = "s3://bucket/p"\nsse = "aws:kms"\nsse_kms_key_id = "k1"\n'
    (tmp_path / "s3.toml").write_text(s3)
    assert load_settings(str(tmp_path / "s3.toml"), env={}).repository.sse == "aws:kms"
    (tmp_path / "bad.toml").write_text('[repository]\nurl = "file:///r"\nsse = "AES256"\n')
    with pytest.raises(ConfigError, match="only for s3"):
        load_settings(str(tmp_path / "bad.toml"), env={})


def test_sealed_summaries_round_trip(tmp_path: Path) -> None:
    identity = Identity.generate()
    path = tmp_path / "id.txt"
    path.write_text(f"{identity}\n")
    keyring = Keyring((identity.recipient(),), str(path))
    txs = (Transaction(None, "0/1", 1, xid=7, summary="DROP TABLE secret_marker"),)
    index = SegmentIndex(wal(1), txs)
    sealed = seal_index(index, keyring)
    assert "secret_marker" not in str(sealed.to_dict())
    assert sealed.transactions[0].xid == 7  # planning fields stay readable
    doc = SegmentIndex.from_document(sealed.to_dict(), "here")
    assert open_index(doc, keyring, "here").transactions == txs
    with pytest.raises(IdentityMissing):
        open_index(doc, Keyring((identity.recipient(),)), "here")
