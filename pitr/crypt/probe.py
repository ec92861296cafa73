"""``pitr check`` with an encrypting repository: the recipients parse, an encrypted probe
object round-trips through the repository and, where an identity is configured, decrypts."""

from __future__ import annotations

import io
import os
import secrets
import socket
from typing import TYPE_CHECKING

from pitr.check import PROBE_PREFIX, CheckReport
from pitr.crypt.keyring import keyring_of
from pitr.errors import VerificationFailed
from pitr.storage.base import Storage

if TYPE_CHECKING:
    from pitr.config import Settings


def check_encryption(storage: Storage, settings: Settings, report: CheckReport) -> None:
    keyring = keyring_of(settings.repository, settings.source)
    key = f"{PROBE_PREFIX}{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}.age"
    payload = os.urandom(4096)

    def recipients() -> str:
        return f"{len(keyring.recipients)} recipient(s): {', '.join(map(str, keyring.recipients))}"

    def round_trip() -> str:
        written = storage.put(key, keyring.encrypt(io.BytesIO(payload)))
        try:
            stored = storage.get_bytes(key)
        finally:
            storage.delete(key)
        if b"age-encryption.org/v1" not in stored[:32] or payload in stored:
            raise VerificationFailed(f"{key}: the probe was not stored encrypted")
        if keyring.identity_file is None:
            return f"encrypted probe stored ({written.size} bytes); no identity_file: not decrypted"
        plain = keyring.decrypt(io.BytesIO(stored), key).read(len(payload) + 1)
        if plain != payload:
            raise VerificationFailed(f"{key}: the probe decrypts to other bytes")
        ours = {i.recipient() for i in keyring.identities(key)}
        spare = "" if ours & set(keyring.recipients) else " (none of the recipients is its own)"
        return f"probe decrypted with {keyring.identity_file}{spare}"

    if report.step("encryption recipients", recipients):
        report.step("encryption probe", round_trip)
