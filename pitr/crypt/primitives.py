"""X25519 and ChaCha20-Poly1305 for ``pitr.crypt.age``, from OpenSSL's libcrypto.

``wal-push`` runs once per WAL segment and PostgreSQL waits for each: importing the
``cryptography`` package (and its first use of OpenSSL) costs tens of milliseconds there,
ctypes a few. So the primitives are called through ctypes' C core (``c_types``) in the
libcrypto that Python's own ``hashlib`` has already loaded and initialised (looked up through
``_hashlib``, whatever its version suffix); where that is not possible, through
``cryptography``, which implements them on the same library. tests/unit/test_age.py checks
both against each other and against age.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

KEY = 32
TAG = 16
_NID_X25519 = 1034
_CTRL_AEAD_GET_TAG = 0x10
_CTRL_AEAD_SET_TAG = 0x11


class InvalidTag(Exception):
    """A sealed message does not authenticate under the key and nonce; ``index`` says which
    of the pieces given at once."""

    def __init__(self, index: int = 0) -> None:
        super().__init__(index)
        self.index = index


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


#: A message inside a larger buffer: (buffer, start, end), so that nothing is copied out.
Piece = tuple[bytes, int, int]


#: ctypes' public module costs ``wal-push`` 3.5 ms to import (it defines some forty C types and
#: their byte-swapped twins); its C core, ``_ctypes``, 0.6 ms. The five types and the function
#: class libcrypto needs are built on that core as ``ctypes/__init__.py`` builds its own
#: (``_SimpleCData`` with a ``_type_`` code, ``CFuncPtr`` with ``_flags_``, ``dlopen``: names
#: unchanged since Python 2.5). Should any be missing or differ, the public module's are used
#: (``public_ctypes``): slower to import, the same behaviour.


def _private() -> SimpleNamespace:
    import _ctypes

    def simple(name: str, code: str) -> Any:  # (``ctypes.c_int`` is ``_type_ = "i"``, ...)
        return type(name, (_ctypes._SimpleCData,), {"_type_": code})

    c_int = simple("c_int", "i")
    function = type(
        "Function", (_ctypes.CFuncPtr,), {"_flags_": _ctypes.FUNCFLAG_CDECL, "_restype_": c_int}
    )
    types = SimpleNamespace(
        c_void_p=simple("c_void_p", "P"),
        c_int=c_int,
        c_size_t=simple("c_size_t", "L"),  # unsigned long: size_t on LP64 (checked below)
        c_char_p=simple("c_char_p", "z"),
        c_char=simple("c_char", "c"),
        byref=_ctypes.byref,
        addressof=_ctypes.addressof,
        sizeof=_ctypes.sizeof,
    )
    if _ctypes.sizeof(types.c_size_t) != _ctypes.sizeof(types.c_void_p):
        raise ImportError("size_t is not unsigned long here")

    def load(path: str) -> Any:
        library = SimpleNamespace(_handle=_ctypes.dlopen(path, _ctypes.RTLD_LOCAL))
        return lambda name: function((name, library))  # (as ctypes.CDLL.__getitem__)

    types.load = load
    return types


def public_ctypes() -> SimpleNamespace:
    """The same names from the public ``ctypes``."""
    import ctypes

    def load(path: str) -> Any:
        lib = ctypes.CDLL(path)
        return lambda name: getattr(lib, name)

    return SimpleNamespace(
        c_void_p=ctypes.c_void_p,
        c_int=ctypes.c_int,
        c_size_t=ctypes.c_size_t,
        c_char_p=ctypes.c_char_p,
        c_char=ctypes.c_char,
        load=load,
        byref=ctypes.byref,
        addressof=ctypes.addressof,
        sizeof=ctypes.sizeof,
    )


def c_types() -> SimpleNamespace:
    """``c_void_p``, ``c_int``, ``c_size_t``, ``c_char_p``, ``c_char``; ``load(path)`` giving
    a lookup of the library's functions by name; ``byref``, ``addressof``, ``sizeof``."""
    try:
        return _private()
    except (ImportError, AttributeError, TypeError):
        return public_ctypes()


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


class _Library:
    """libcrypto's functions used here, as attributes, and the C types to call them (``c``)."""

    def __init__(self, c: Any) -> None:
        self.c = c


_FETCH = "EVP_CIPHER_fetch"  # OpenSSL 3: the cipher looked up once, not at every message


@functools.cache
def libcrypto() -> Any | None:
    """The libcrypto ``hashlib`` uses, its functions typed (and its C types as ``c``); None
    when it cannot be used."""
    try:
        import _hashlib

        c = c_types()
        function = c.load(_hashlib.__file__)  # its dependencies' symbols resolve through it
        lib = _Library(c)
        for name, (restype, argtypes) in _signatures(c).items():
            fn = function(name)
            fn.restype, fn.argtypes = restype, argtypes
            setattr(lib, name, fn)
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
def _chacha(lib: Any) -> int:
    """The ChaCha20-Poly1305 cipher, fetched once (OpenSSL 3) rather than at every message."""
    cipher = 0
    if hasattr(lib, _FETCH):
        cipher = getattr(lib, _FETCH)(None, b"ChaCha20-Poly1305", None) or 0
    return cipher or int(lib.EVP_chacha20_poly1305())


def _address(c: Any, data: bytes) -> int:
    """Where the bytes of ``data`` are (valid while ``data`` lives; nothing is copied)."""
    return c.c_void_p.from_buffer(c.c_char_p(data)).value or 0


def _buffer(c: Any, size: int) -> Any:
    return (c.c_char * size)()


class _OpenSslAead:
    """ChaCha20-Poly1305 (RFC 8439): one EVP context per direction, keyed once; each message
    only sets its nonce, reads its piece where it lies and writes into one output buffer.
    (ctypes releases the GIL during each call, so other threads run beside it.)"""

    def __init__(self, lib: Any, key: bytes) -> None:
        self._lib = lib
        self._key = key
        self._contexts: dict[bool, int] = {}
        self._out = _buffer(lib.c, 0)  # reused: fresh memory costs page faults

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
            if lib.EVP_CipherInit_ex(ctx, _chacha(lib), None, self._key, None, encrypt) != 1:
                raise ValueError("EVP_CipherInit_ex failed")
        return ctx

    def _run(self, pieces: Sequence[Piece], nonces: Sequence[bytes], encrypt: bool) -> bytes:
        lib, ctx = self._lib, self._context(encrypt)
        c = lib.c
        grow = TAG if encrypt else -TAG
        size = sum(e - s + grow for _, s, e in pieces)
        if c.sizeof(self._out) < size:
            self._out = _buffer(c, size)
        base, pos = c.addressof(self._out), 0
        n = c.c_int(0)
        got = c.byref(n)
        last_data, last_address = b"", 0
        for i, ((data, start, end), nonce) in enumerate(zip(pieces, nonces, strict=True)):
            if data is not last_data:
                last_data, last_address = data, _address(c, data)
            source, size = last_address + start, end - start + (0 if encrypt else -TAG)
            if size < 0:
                raise InvalidTag(i)
            if lib.EVP_CipherInit_ex(ctx, None, None, None, nonce, -1) != 1:
                raise ValueError("EVP_CipherInit_ex failed")
            if lib.EVP_CipherUpdate(ctx, base + pos, got, source, size) != 1:
                raise ValueError("EVP_CipherUpdate failed")
            pos += n.value
            if not encrypt:
                lib.EVP_CIPHER_CTX_ctrl(ctx, _CTRL_AEAD_SET_TAG, TAG, source + size)
            if lib.EVP_CipherFinal_ex(ctx, base + pos, got) != 1:
                raise InvalidTag(i)
            pos += n.value
            if encrypt:
                lib.EVP_CIPHER_CTX_ctrl(ctx, _CTRL_AEAD_GET_TAG, TAG, base + pos)
                pos += TAG
        return memoryview(self._out)[:pos].tobytes()

    def seal(self, pieces: Sequence[Piece], nonces: Sequence[bytes]) -> bytes:
        return self._run(pieces, nonces, True)

    def open(self, pieces: Sequence[Piece], nonces: Sequence[bytes]) -> bytes:
        return self._run(pieces, nonces, False)

    def encrypt(self, nonce: bytes, data: bytes) -> bytes:
        return self._run([(data, 0, len(data))], [nonce], True)

    def decrypt(self, nonce: bytes, data: bytes) -> bytes:
        return self._run([(data, 0, len(data))], [nonce], False)


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


def _openssl_exchange(lib: Any, secret: bytes, peer: bytes | None) -> tuple[bytes, bytes]:
    """(the public key of ``secret``, its shared secret with ``peer`` or b"")."""
    mine = _raw_key(lib, secret, None)  # (OpenSSL computes its public key here)
    c = lib.c
    out = _buffer(c, KEY)
    size = c.c_size_t(KEY)
    try:
        ok = lib.EVP_PKEY_get_raw_public_key(mine, out, c.byref(size)) == 1
        own = _checked(ok, out.raw[: size.value])
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
        return own, _checked(ok, out.raw[: size.value])
    finally:
        lib.EVP_PKEY_free(mine)


def _checked(ok: bool, value: bytes) -> bytes:
    if not ok or len(value) != KEY or value == bytes(KEY):
        raise ValueError("X25519 failed (a low-order point?)")
    return value


def exchange(secret: bytes, peer: bytes, *, openssl: bool = True) -> tuple[bytes, bytes]:
    """(the public key of ``secret``, the shared secret of ``secret`` and ``peer``) from one
    private key: a scalar multiplication fewer than two ``x25519`` calls. ``ValueError`` for
    the all-zero result of a low-order point."""
    lib = libcrypto() if openssl else None
    if lib is not None:
        return _openssl_exchange(lib, secret, peer)
    from cryptography.hazmat.primitives.asymmetric.x25519 import (
        X25519PrivateKey,
        X25519PublicKey,
    )

    mine = X25519PrivateKey.from_private_bytes(secret)
    shared = mine.exchange(X25519PublicKey.from_public_bytes(peer))
    return mine.public_key().public_bytes_raw(), _checked(True, shared)


def x25519(secret: bytes, public: bytes | None, *, openssl: bool = True) -> bytes:
    """The shared secret of ``secret`` and ``public``; with ``public`` None, the public key
    of ``secret``. ``ValueError`` for the all-zero result of a low-order point."""
    if public is not None:
        return exchange(secret, public, openssl=openssl)[1]
    lib = libcrypto() if openssl else None
    if lib is not None:
        return _openssl_exchange(lib, secret, None)[0]
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    return X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes_raw()
