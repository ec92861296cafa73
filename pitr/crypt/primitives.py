"""X25519 and ChaCha20-Poly1305 for ``pitr.crypt.age``, from the first of these backends
that is usable here (``BACKENDS``):

- ``libsodium`` (Debian's ``libsodium23``; in ``pitr.crypt.native``): plain functions,
  0.2 ms to load;
- ``libcrypto``, the OpenSSL Python's ``hashlib`` has loaded (``pitr.crypt.openssl``): as
  fast on bulk data, about 1.5 ms more to start;
- ``cryptography`` (``pitr.crypt.fallback``), which implements them on OpenSSL too: always
  there, but tens of milliseconds to import, and ``wal-push`` runs once per WAL segment with
  PostgreSQL waiting for each.

The first two are called through ctypes' C core (``pitr.crypt.native``); only the backend in
use is imported.

tests/unit/test_age.py checks the three against each other, RFC 7748 and Debian's ``age``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pitr.crypt.native import (
    KEY,
    TAG,
    InvalidTag,
    Piece,
    libsodium,
    sodium_aead,
    sodium_exchange,
)

__all__ = ["KEY", "TAG", "InvalidTag", "Piece"]  # (for ``pitr.crypt.age``)

if TYPE_CHECKING:  # (``wal-push`` imports this module per segment: no class it does not use)
    from typing import Protocol

    class Aead(Protocol):
        def encrypt(self, nonce: bytes, data: bytes) -> bytes: ...
        def decrypt(self, nonce: bytes, data: bytes) -> bytes: ...
        def seal(self, pieces: Sequence[Piece], nonces: Sequence[bytes]) -> bytes:
            """Each piece encrypted under its nonce, tag appended, all in one buffer."""

        def open(self, pieces: Sequence[Piece], nonces: Sequence[bytes]) -> bytes:
            """Each sealed piece authenticated and decrypted, all in one buffer;
            ``InvalidTag(i)`` for the first piece ``i`` that does not authenticate."""


LIBSODIUM, LIBCRYPTO, CRYPTOGRAPHY = "libsodium", "libcrypto", "cryptography"
#: In the order they are preferred.
BACKENDS = (LIBSODIUM, LIBCRYPTO, CRYPTOGRAPHY)


def _library(name: str) -> Any | None:
    if name == LIBSODIUM:
        return libsodium()
    from pitr.crypt.openssl import libcrypto

    return libcrypto()


def _backend(name: str | None) -> tuple[str, Any]:
    """(the backend called ``name``, or else the first usable here; its library, None for
    ``cryptography``). ``ValueError`` when the one named cannot be used here."""
    for candidate in BACKENDS if name is None else (name,):
        if candidate == CRYPTOGRAPHY:
            return candidate, None
        if candidate not in BACKENDS:
            raise ValueError(f"unknown backend {candidate!r}")
        lib = _library(candidate)
        if lib is not None:
            return candidate, lib
    raise ValueError(f"{name} cannot be used here")


def backend() -> str:
    """The backend this process uses (one of ``BACKENDS``)."""
    return _backend(None)[0]


def chacha20_poly1305(key: bytes, *, backend: str | None = None) -> Aead:
    """The AEAD under ``key``, from ``backend`` (by default the first usable here)."""
    name, lib = _backend(backend)
    if name == LIBSODIUM:
        return sodium_aead(lib, key)
    if name == LIBCRYPTO:
        from pitr.crypt.openssl import openssl_aead

        return openssl_aead(lib, key)
    from pitr.crypt import fallback

    return fallback.aead(key)


def exchange(
    secret: bytes, peer: bytes | None, *, backend: str | None = None
) -> tuple[bytes, bytes]:
    """(the public key of ``secret``, the shared secret of ``secret`` and ``peer``, or b""
    with ``peer`` None) from one private key: a scalar multiplication fewer than two
    ``x25519`` calls. ``ValueError`` for the all-zero result of a low-order point."""
    name, lib = _backend(backend)
    if name == LIBSODIUM:
        return sodium_exchange(lib, secret, peer)
    if name == LIBCRYPTO:
        from pitr.crypt import openssl

        return openssl.exchange(lib, secret, peer)
    from pitr.crypt import fallback

    return fallback.exchange(secret, peer)


def x25519(secret: bytes, public: bytes | None, *, backend: str | None = None) -> bytes:
    """The shared secret of ``secret`` and ``public``; with ``public`` None, the public key
    of ``secret``. ``ValueError`` for the all-zero result of a low-order point."""
    own, shared = exchange(secret, public, backend=backend)
    return own if public is None else shared
