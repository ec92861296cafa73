"""X25519 and ChaCha20-Poly1305 for ``pitr.crypt.age``, from OpenSSL's libcrypto.

``wal-push`` runs once per WAL segment and PostgreSQL waits for each: importing the
``cryptography`` package (and its first use of OpenSSL) costs tens of milliseconds there,
ctypes a few. So the primitives are called through ctypes in the libcrypto that Python's own
``hashlib`` has already loaded and initialised (looked up through ``_hashlib``, whatever its
version suffix); where that is not possible, through ``cryptography``, which implements them
on the same library. tests/unit/test_age.py checks both against each other and against age.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any, Protocol

KEY = 32
TAG = 16
_NID_X25519 = 1034
_CTRL_AEAD_GET_TAG = 0x10
_CTRL_AEAD_SET_TAG = 0x11


class InvalidTag(Exception):
    """A sealed message does not authenticate under the key and nonce."""


class Aead(Protocol):
    def encrypt(self, nonce: bytes, data: bytes) -> bytes: ...
    def decrypt(self, nonce: bytes, data: bytes) -> bytes: ...


_P = ctypes.c_void_p
_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "EVP_chacha20_poly1305": (_P, []),
    "EVP_CIPHER_CTX_new": (_P, []),
    "EVP_CIPHER_CTX_free": (None, [_P]),
    "EVP_CIPHER_CTX_ctrl": (ctypes.c_int, [_P, ctypes.c_int, ctypes.c_int, _P]),
    "EVP_CipherInit_ex": (ctypes.c_int, [_P, _P, _P, ctypes.c_char_p, ctypes.c_char_p,
                                         ctypes.c_int]),
    "EVP_CipherUpdate": (ctypes.c_int, [_P, _P, ctypes.POINTER(ctypes.c_int), ctypes.c_char_p,
                                        ctypes.c_int]),
    "EVP_CipherFinal_ex": (ctypes.c_int, [_P, _P, ctypes.POINTER(ctypes.c_int)]),
    "EVP_PKEY_new_raw_private_key": (_P, [ctypes.c_int, _P, ctypes.c_char_p, ctypes.c_size_t]),
    "EVP_PKEY_new_raw_public_key": (_P, [ctypes.c_int, _P, ctypes.c_char_p, ctypes.c_size_t]),
    "EVP_PKEY_get_raw_public_key": (ctypes.c_int, [_P, _P, ctypes.POINTER(ctypes.c_size_t)]),
    "EVP_PKEY_free": (None, [_P]),
    "EVP_PKEY_CTX_new": (_P, [_P, _P]),
    "EVP_PKEY_CTX_free": (None, [_P]),
    "EVP_PKEY_derive_init": (ctypes.c_int, [_P]),
    "EVP_PKEY_derive_set_peer": (ctypes.c_int, [_P, _P]),
    "EVP_PKEY_derive": (ctypes.c_int, [_P, _P, ctypes.POINTER(ctypes.c_size_t)]),
}  # fmt: skip


@functools.cache
def libcrypto() -> Any | None:
    """The libcrypto ``hashlib`` uses, its functions typed; None when it cannot be used."""
    try:
        import _hashlib

        lib = ctypes.CDLL(_hashlib.__file__)  # its dependencies' symbols resolve through it
        for name, (restype, argtypes) in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = restype, argtypes
    except (ImportError, OSError, AttributeError):
        return None
    return lib


class _OpenSslAead:
    """ChaCha20-Poly1305 (RFC 8439) with one EVP context, re-keyed per message."""

    def __init__(self, lib: Any, key: bytes) -> None:
        self._lib = lib
        self._key = key
        self._cipher = lib.EVP_chacha20_poly1305()
        self._ctx = lib.EVP_CIPHER_CTX_new()
        if not self._ctx:
            raise MemoryError("EVP_CIPHER_CTX_new")

    def __del__(self) -> None:
        if getattr(self, "_ctx", None):
            self._lib.EVP_CIPHER_CTX_free(self._ctx)

    def _run(self, nonce: bytes, data: bytes, encrypt: bool, tag: bytes = b"") -> bytes:
        lib, ctx = self._lib, self._ctx
        out = ctypes.create_string_buffer(len(data) + TAG)
        n = ctypes.c_int(0)
        if lib.EVP_CipherInit_ex(ctx, self._cipher, None, self._key, nonce, int(encrypt)) != 1:
            raise ValueError("EVP_CipherInit_ex failed")
        if lib.EVP_CipherUpdate(ctx, out, ctypes.byref(n), data, len(data)) != 1:
            raise ValueError("EVP_CipherUpdate failed")
        size = n.value
        if not encrypt:
            lib.EVP_CIPHER_CTX_ctrl(ctx, _CTRL_AEAD_SET_TAG, TAG, ctypes.c_char_p(tag))
        tail = ctypes.c_int(0)
        if lib.EVP_CipherFinal_ex(ctx, ctypes.byref(out, size), ctypes.byref(tail)) != 1:
            raise InvalidTag()
        size += tail.value
        if encrypt:
            lib.EVP_CIPHER_CTX_ctrl(ctx, _CTRL_AEAD_GET_TAG, TAG, ctypes.byref(out, size))
            size += TAG
        return ctypes.string_at(out, size)

    def encrypt(self, nonce: bytes, data: bytes) -> bytes:
        return self._run(nonce, data, True)

    def decrypt(self, nonce: bytes, data: bytes) -> bytes:
        if len(data) < TAG:
            raise InvalidTag()
        return self._run(nonce, data[:-TAG], False, data[-TAG:])


class _CryptographyAead:
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


def chacha20_poly1305(key: bytes, *, openssl: bool = True) -> Aead:
    lib = libcrypto() if openssl else None
    return _OpenSslAead(lib, key) if lib is not None else _CryptographyAead(key)


def _raw_key(lib: Any, secret: bytes | None, public: bytes | None) -> Any:
    if secret is not None:
        key = lib.EVP_PKEY_new_raw_private_key(_NID_X25519, None, secret, len(secret))
    else:
        assert public is not None
        key = lib.EVP_PKEY_new_raw_public_key(_NID_X25519, None, public, len(public))
    if not key:
        raise ValueError("invalid X25519 key")
    return key


def _openssl_x25519(lib: Any, secret: bytes, public: bytes | None) -> bytes:
    mine = _raw_key(lib, secret, None)
    out = ctypes.create_string_buffer(KEY)
    size = ctypes.c_size_t(KEY)
    try:
        if public is None:
            ok = lib.EVP_PKEY_get_raw_public_key(mine, out, ctypes.byref(size)) == 1
            return _checked(ok, out.raw[: size.value])
        peer = _raw_key(lib, None, public)
        ctx = lib.EVP_PKEY_CTX_new(mine, None)
        try:
            ok = (
                bool(ctx)
                and lib.EVP_PKEY_derive_init(ctx) == 1
                and lib.EVP_PKEY_derive_set_peer(ctx, peer) == 1
                and lib.EVP_PKEY_derive(ctx, out, ctypes.byref(size)) == 1
            )
        finally:
            lib.EVP_PKEY_CTX_free(ctx)
            lib.EVP_PKEY_free(peer)
        return _checked(ok, out.raw[: size.value])
    finally:
        lib.EVP_PKEY_free(mine)


def _checked(ok: bool, value: bytes) -> bytes:
    if not ok or len(value) != KEY or value == bytes(KEY):
        raise ValueError("X25519 failed (a low-order point?)")
    return value


def x25519(secret: bytes, public: bytes | None, *, openssl: bool = True) -> bytes:
    """The shared secret of ``secret`` and ``public``; with ``public`` None, the public key
    of ``secret``. ``ValueError`` for the all-zero result of a low-order point."""
    lib = libcrypto() if openssl else None
    if lib is not None:
        return _openssl_x25519(lib, secret, public)
    from cryptography.hazmat.primitives.asymmetric.x25519 import (
        X25519PrivateKey,
        X25519PublicKey,
    )

    mine = X25519PrivateKey.from_private_bytes(secret)
    if public is None:
        return mine.public_key().public_bytes_raw()
    return _checked(True, mine.exchange(X25519PublicKey.from_public_bytes(public)))
