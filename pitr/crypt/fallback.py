"""X25519 and ChaCha20-Poly1305 from the ``cryptography`` package, for where neither libsodium
nor the libcrypto ``hashlib`` uses can be called (``pitr.crypt.primitives``): the same results,
tens of milliseconds more to import.
"""

from __future__ import annotations

from collections.abc import Sequence

from pitr.crypt.native import InvalidTag, Piece, checked


class _Aead:
    def __init__(self, key: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

        self._aead = ChaCha20Poly1305(key)

    def encrypt(self, nonce: bytes, data: bytes) -> bytes:
        return self._aead.encrypt(nonce, data, None)

    def decrypt(self, nonce: bytes, data: bytes) -> bytes:
        from cryptography.exceptions import InvalidTag as Invalid

        try:
            return self._aead.decrypt(nonce, data, None)
        except Invalid:
            raise InvalidTag() from None

    def seal(self, pieces: Sequence[Piece], nonces: Sequence[bytes]) -> bytes:
        pairs = zip(pieces, nonces, strict=True)
        return b"".join(self.encrypt(nonce, data[s:e]) for (data, s, e), nonce in pairs)

    def open(self, pieces: Sequence[Piece], nonces: Sequence[bytes]) -> bytes:
        opened = []
        for i, ((data, start, end), nonce) in enumerate(zip(pieces, nonces, strict=True)):
            try:
                opened.append(self.decrypt(nonce, data[start:end]))
            except InvalidTag:
                raise InvalidTag(i) from None
        return b"".join(opened)


def aead(key: bytes) -> _Aead:
    """ChaCha20-Poly1305 under ``key``."""
    return _Aead(key)


def exchange(secret: bytes, peer: bytes | None) -> tuple[bytes, bytes]:
    """(the public key of ``secret``, its shared secret with ``peer`` or b"")."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import (
        X25519PrivateKey,
        X25519PublicKey,
    )

    mine = X25519PrivateKey.from_private_bytes(secret)
    own = mine.public_key().public_bytes_raw()
    if peer is None:
        return own, b""
    try:
        shared = mine.exchange(X25519PublicKey.from_public_bytes(peer))
    except ValueError:  # (cryptography's own error for a low-order point)
        shared = b""
    return own, checked(bool(shared), shared)
