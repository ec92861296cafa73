"""Client-side encryption of repository objects in the age format (docs/encryption.md).

``age`` writes and reads age-encryption.org/v1 files (X25519 recipients, ChaCha20-Poly1305
STREAM) as streams in bounded memory; ``keyring`` turns the configuration into the keys a
process may use.

The repository's keyring is installed here once per process, when the repository is opened
(``install``); the transfer pipeline and the catalog take it from here, as logging takes its
redactions, so that every reader and writer of objects uses the same keys. A process whose
repository neither encrypts nor names an identity installs none and imports nothing more of
this package than this module (``wal-push`` runs once per WAL segment).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pitr.crypt.keyring import Keyring, KeySettings

_installed: Keyring | None = None
_pending: tuple[KeySettings, str] | None = None  # what to build it from at its first use
_building = threading.Lock()


def install(keyring: Keyring | None) -> None:
    """Make ``keyring`` the one this process uses."""
    global _installed, _pending
    _installed, _pending = keyring, None


def install_lazily(repo: KeySettings, source: str) -> None:
    """Make the keyring of ``repo`` the one this process uses, built (its modules imported, its
    keys read) at its first use, or ahead of it by ``ready``."""
    global _installed, _pending
    _installed, _pending = None, (repo, source)


def ready() -> None:
    """Build the keyring if it is pending, and load the primitives' library. ``wal-push`` runs
    this in a thread while zstd compresses the segment outside the GIL, so that PostgreSQL
    does not wait for it (docs/encryption.md, "What it costs")."""
    keyring = _current()
    if keyring is not None:
        from pitr.crypt.primitives import load

        load()


def _current() -> Keyring | None:
    global _installed, _pending
    if _pending is not None:
        with _building:
            if _pending is not None:
                from pitr.crypt.keyring import keyring_for

                _installed, _pending = keyring_for(*_pending), None
    return _installed


def encrypting() -> bool:
    """Whether new objects and documents are encrypted."""
    keyring = _current()
    return keyring is not None and keyring.encrypts


def can_decrypt() -> bool:
    """Whether an identity is configured to read encrypted contents."""
    keyring = _current()
    return keyring is not None and keyring.can_decrypt


def installed() -> Keyring:
    """The installed keyring (an empty one when none is: no recipients, no identity)."""
    keyring = _current()
    if keyring is not None:
        return keyring
    from pitr.crypt.keyring import Keyring

    return Keyring()
