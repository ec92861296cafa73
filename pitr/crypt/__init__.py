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

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pitr.crypt.keyring import Keyring

_installed: Keyring | None = None


def install(keyring: Keyring | None) -> None:
    """Make ``keyring`` the one this process uses."""
    global _installed
    _installed = keyring


def encrypting() -> bool:
    """Whether new objects and documents are encrypted."""
    return _installed is not None and _installed.encrypts


def can_decrypt() -> bool:
    """Whether an identity is configured to read encrypted contents."""
    return _installed is not None and _installed.can_decrypt


def installed() -> Keyring:
    """The installed keyring (an empty one when none is: no recipients, no identity)."""
    if _installed is not None:
        return _installed
    from pitr.crypt.keyring import Keyring

    return Keyring()
