"""ChaCha20-Poly1305 and X25519 from OpenSSL's libcrypto: the one Python's own ``hashlib``
has already loaded (looked up through ``_hashlib``, whatever its version suffix), the backend
``pitr.crypt.primitives`` uses where libsodium is not installed. As fast on bulk data, but
OpenSSL 3's first fetch of a cipher builds its whole table of ciphers (about 1 ms,
docs/encryption.md), and its keys go through EVP objects.
"""

from __future__ import annotations

import functools
from typing import Any

from pitr.crypt.native import KEY, TAG, Library, NativeAead, buffer, c_types, checked

_NID_X25519 = 1034
_CTRL_AEAD_GET_TAG = 0x10
_CTRL_AEAD_SET_TAG = 0x11
_FETCH = "EVP_CIPHER_fetch"  # OpenSSL 3: the cipher looked up once, not at every message


def _signatures(c: Any) -> dict[str, tuple[Any, list[Any]]]:
    p, i, s, n = c.c_void_p, c.c_int, c.c_char_p, c.c_size_t  # (pointers to ints: p, byref)
    return {
        "EVP_chacha20_poly1305": (p, []),
        "EVP_CIPHER_CTX_new": (p, []),
        "EVP_CIPHER_CTX_free": (None, [p]),
        "EVP_CIPHER_CTX_ctrl": (i, [p, i, i, p]),
        "EVP_CipherInit_ex": (i, [p, p, p, s, s, i]),
        "EVP_CipherUpdate": (i, [p, p, p, p, i]),
        "EVP_CipherFinal_ex": (i, [p, p, p]),
        "EVP_PKEY_new_raw_private_key": (p, [i, p, s, n]),
        "EVP_PKEY_new_raw_public_key": (p, [i, p, s, n]),
        "EVP_PKEY_get_raw_public_key": (i, [p, p, p]),
        "EVP_PKEY_free": (None, [p]),
        "EVP_PKEY_CTX_new": (p, [p, p]),
        "EVP_PKEY_CTX_free": (None, [p]),
        "EVP_PKEY_derive_init": (i, [p]),
        "EVP_PKEY_derive_set_peer": (i, [p, p]),
        "EVP_PKEY_derive": (i, [p, p, p]),
    }


@functools.cache
def libcrypto() -> Any | None:
    """The libcrypto ``hashlib`` uses, its functions typed (and its C types as ``c``); None
    when it cannot be used."""
    try:
        import _hashlib

        c = c_types()
        function = c.load(_hashlib.__file__)  # its dependencies' symbols resolve through it
        lib: Any = Library(c, function, _signatures(c))
        try:
            fetch = function(_FETCH)
            fetch.restype, fetch.argtypes = c.c_void_p, [c.c_void_p, c.c_char_p, c.c_char_p]
            setattr(lib, _FETCH, fetch)
        except AttributeError:
            pass  # OpenSSL 1.1
    except (ImportError, OSError, AttributeError):
        return None
    return lib


@functools.cache
def cipher(lib: Any) -> int:
    """The ChaCha20-Poly1305 cipher, fetched once (OpenSSL 3) rather than at every message."""
    found = 0
    if hasattr(lib, _FETCH):
        found = getattr(lib, _FETCH)(None, b"ChaCha20-Poly1305", None) or 0
    return found or int(lib.EVP_chacha20_poly1305())


class _Contexts:
    """OpenSSL's EVP: one context per direction, keyed once; each message sets its nonce."""

    def __init__(self, lib: Any, key: bytes) -> None:
        self._lib = lib
        self._key = key
        self._contexts: dict[bool, int] = {}
        self._got = lib.c.c_int(0)

    def __del__(self) -> None:
        for ctx in getattr(self, "_contexts", {}).values():
            self._lib.EVP_CIPHER_CTX_free(ctx)

    def _context(self, encrypt: bool) -> int:
        ctx = self._contexts.get(encrypt)
        if ctx is None:
            lib = self._lib
            ctx = lib.EVP_CIPHER_CTX_new()
            if not ctx:
                raise MemoryError("EVP_CIPHER_CTX_new")
            self._contexts[encrypt] = ctx
            if lib.EVP_CipherInit_ex(ctx, cipher(lib), None, self._key, None, encrypt) != 1:
                raise ValueError("EVP_CipherInit_ex failed")
        return ctx

    def message(self, encrypt: bool, out: int, source: int, size: int, nonce: bytes) -> bool:
        """A ``pitr.crypt.native.Message``."""
        lib, ctx, got = self._lib, self._context(encrypt), self._got
        size -= 0 if encrypt else TAG
        if lib.EVP_CipherInit_ex(ctx, None, None, None, nonce, -1) != 1:
            raise ValueError("EVP_CipherInit_ex failed")
        if lib.EVP_CipherUpdate(ctx, out, lib.c.byref(got), source, size) != 1:
            raise ValueError("EVP_CipherUpdate failed")
        if not encrypt:
            lib.EVP_CIPHER_CTX_ctrl(ctx, _CTRL_AEAD_SET_TAG, TAG, source + size)
        if lib.EVP_CipherFinal_ex(ctx, out + got.value, lib.c.byref(got)) != 1:
            return False
        if encrypt:
            lib.EVP_CIPHER_CTX_ctrl(ctx, _CTRL_AEAD_GET_TAG, TAG, out + size)
        return True


def openssl_aead(lib: Any, key: bytes) -> NativeAead:
    """ChaCha20-Poly1305 on libcrypto's EVP contexts."""
    return NativeAead(lib.c, _Contexts(lib, key).message)


def _raw_key(lib: Any, secret: bytes | None, public: bytes | None) -> Any:
    if secret is not None:
        key = lib.EVP_PKEY_new_raw_private_key(_NID_X25519, None, secret, len(secret))
    else:
        assert public is not None
        key = lib.EVP_PKEY_new_raw_public_key(_NID_X25519, None, public, len(public))
    if not key:
        raise ValueError("invalid X25519 key")
    return key


def exchange(lib: Any, secret: bytes, peer: bytes | None) -> tuple[bytes, bytes]:
    """(the public key of ``secret``, its shared secret with ``peer`` or b"")."""
    mine = _raw_key(lib, secret, None)  # (OpenSSL computes its public key here)
    c = lib.c
    out = buffer(c, KEY)
    size = c.c_size_t(KEY)
    try:
        ok = lib.EVP_PKEY_get_raw_public_key(mine, out, c.byref(size)) == 1
        own = checked(ok, out.raw[: size.value])
        if peer is None:
            return own, b""
        theirs = _raw_key(lib, None, peer)
        ctx = lib.EVP_PKEY_CTX_new(mine, None)
        try:
            ok = (
                bool(ctx)
                and lib.EVP_PKEY_derive_init(ctx) == 1
                and lib.EVP_PKEY_derive_set_peer(ctx, theirs) == 1
                and lib.EVP_PKEY_derive(ctx, out, c.byref(size)) == 1
            )
        finally:
            lib.EVP_PKEY_CTX_free(ctx)
            lib.EVP_PKEY_free(theirs)
        return own, checked(ok, out.raw[: size.value])
    finally:
        lib.EVP_PKEY_free(mine)
