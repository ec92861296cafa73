"""``pitr check``: is the configuration valid and the repository usable, end to end?

A probe object is written, found in a listing, read back and compared, then deleted, each step
timed; with encryption on, an encrypted probe goes the same way and, given an identity, is
decrypted. The first failing step stops the check; its error decides the exit code.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import socket
from typing import TYPE_CHECKING

from pitr.domain.checks import CheckReport
from pitr.errors import ObjectNotFound, StorageUnavailable, VerificationFailed
from pitr.storage.base import Storage

if TYPE_CHECKING:
    from pitr.config.settings import Settings

PROBE_PREFIX = ".pitr-check/"
PROBE_SIZE = 64 * 1024


def check_repository(storage: Storage, report: CheckReport) -> None:
    """Write, list, read back and delete a probe object, timing each step."""
    key = f"{PROBE_PREFIX}{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
    payload = os.urandom(PROBE_SIZE)
    expected = hashlib.sha256(payload).hexdigest()

    def write() -> str:
        result = storage.put_bytes(key, payload, if_absent=storage.supports_create_if_absent)
        if result.sha256 != expected:
            raise VerificationFailed(f"{key}: written checksum differs from the probe's")
        return f"wrote {key} ({PROBE_SIZE} bytes)"

    def listed() -> str:
        keys = [info.key for info in storage.list(PROBE_PREFIX)]
        if key not in keys:
            raise StorageUnavailable(f"{storage.describe()}: the probe {key} is not listed")
        return f"listed {len(keys)} object(s) under {PROBE_PREFIX}"

    def read_back() -> str:
        if hashlib.sha256(storage.get_bytes(key)).hexdigest() != expected:
            raise VerificationFailed(f"{key}: read back different bytes")
        return "read back intact (sha256 matches)"

    def delete() -> str:
        storage.delete(key)
        try:
            storage.stat(key)
        except ObjectNotFound:
            return "deleted"
        raise StorageUnavailable(f"{storage.describe()}: the probe {key} survived its delete")

    # The probe is deleted only once written: a repository that cannot be written to (an
    # unreachable endpoint) stops the check at once, within one retry budget.
    if not report.step("repository write", write):
        return
    try:
        for name, action in (("list", listed), ("read", read_back)):
            if not report.step(f"repository {name}", action):
                return
    finally:
        report.step("repository delete", delete)


def check_encryption(storage: Storage, settings: Settings, report: CheckReport) -> None:
    """With ``encryption = "age"``: the recipients parse, an encrypted probe object round-trips
    through the repository and, where an identity is configured, decrypts."""
    from pitr.crypt.keyring import keyring_of

    keyring = keyring_of(settings.repository, settings.source)
    key = f"{PROBE_PREFIX}{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}.age"
    payload = os.urandom(4096)

    def recipients() -> str:
        from pitr.crypt.primitives import backend

        listed = ", ".join(map(str, keyring.recipients))
        return f"{len(keyring.recipients)} recipient(s): {listed}; primitives from {backend()}"

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


def run_checks(settings: Settings, instance: str | None) -> CheckReport:
    """Everything ``pitr check`` checks, in order: the configuration, the repository end to
    end, then the engine checks of the instance (or of every configured one). The first
    failing step stops the rest; it is ``report.error``."""
    from pitr.catalog.store import open_catalog
    from pitr.engines import engine_for
    from pitr.storage import open_storage

    report = CheckReport()
    report.add("config", True, f"{settings.source} is valid")
    names = [settings.instance(instance).name] if instance else sorted(settings.instances)
    for name in names:
        report.add(f"instance {name}", True, f"engine {settings.instances[name].engine}")
    report.step("repository open", lambda: open_storage(settings.repository).describe())
    if report.error is None:
        check_repository(open_storage(settings.repository), report)
    if report.error is None and settings.repository.encryption == "age":
        check_encryption(open_storage(settings.repository), settings, report)
    for name in names:
        if report.error is None:
            inst = settings.instances[name]
            engine_for(settings, inst).check(open_catalog(settings, inst), report)
    return report
