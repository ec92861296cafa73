"""The primitives in C libraries, called through ctypes' C core: that core, the AEAD's walk
over the pieces of a call (shared with ``pitr.crypt.openssl``), and libsodium's backend.

ctypes' public module costs ``wal-push`` 3.5 ms to import (it defines some forty C types and
their byte-swapped twins); its C core, ``_ctypes``, 0.6 ms. The few types and the function
class the primitives need are built on that core as ``ctypes/__init__.py`` builds its own
(``_SimpleCData`` with a ``_type_`` code, ``CFuncPtr`` with ``_flags_``, ``dlopen``: names
unchanged since Python 2.5). Should any be missing or differ, the public module's are used
(``public_ctypes``): slower to import, the same behaviour.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any


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
        c_ulonglong=simple("c_ulonglong", "Q"),
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
        c_ulonglong=ctypes.c_ulonglong,
        c_char_p=ctypes.c_char_p,
        c_char=ctypes.c_char,
        load=load,
        byref=ctypes.byref,
        addressof=ctypes.addressof,
        sizeof=ctypes.sizeof,
    )


@functools.cache
def c_types() -> SimpleNamespace:
    """``c_void_p``, ``c_int``, ``c_size_t``, ``c_ulonglong``, ``c_char_p``, ``c_char``;
    ``load(path)`` giving a lookup of the library's functions by name; ``byref``,
    ``addressof``, ``sizeof``."""
    try:
        return _private()
    except (ImportError, AttributeError, TypeError):
        return public_ctypes()


class Library:
    """A library's functions used here, as attributes, and the C types to call them (``c``)."""

    def __init__(self, c: Any, function: Any, signatures: dict[str, tuple[Any, list[Any]]]):
        self.c = c
        for name, (restype, argtypes) in signatures.items():
            fn = function(name)
            fn.restype, fn.argtypes = restype, argtypes
            setattr(self, name, fn)


def address(c: Any, data: bytes) -> int:
    """Where the bytes of ``data`` are (valid while ``data`` lives; nothing is copied)."""
    return c.c_void_p.from_buffer(c.c_char_p(data)).value or 0


def buffer(c: Any, size: int) -> Any:
    return (c.c_char * size)()


KEY = 32
TAG = 16


class InvalidTag(Exception):
    """A sealed message does not authenticate under the key and nonce; ``index`` says which
    of the pieces given at once."""

    def __init__(self, index: int = 0) -> None:
        super().__init__(index)
        self.index = index


#: A message inside a larger buffer: (buffer, start, end), so that nothing is copied out.
Piece = tuple[bytes, int, int]


def checked(ok: bool, value: bytes) -> bytes:
    """An X25519 result, refused (``ValueError``) when the call failed or it is all zeros."""
    if not ok or len(value) != KEY or value == bytes(KEY):
        raise ValueError("X25519 failed (a low-order point?)")
    return value


#: Seals (``size`` bytes of plaintext) or opens (``size`` bytes of ciphertext, its tag after
#: them) the message at ``source`` into ``out`` under ``nonce``: (sealing, out, source, size,
#: nonce); False when it does not authenticate.
Message = Callable[[bool, int, int, int, bytes], bool]


class NativeAead:
    """ChaCha20-Poly1305 (RFC 8439) in a C library, one ``Message`` call per message: each is
    read where it lies and written into one output buffer, reused from call to call (fresh
    memory costs page faults). ctypes releases the GIL during each call."""

    def __init__(self, c: Any, message: Message) -> None:
        self._c = c
        self._message = message
        self._out = buffer(c, 0)

    def _run(self, pieces: Sequence[Piece], nonces: Sequence[bytes], encrypt: bool) -> bytes:
        c = self._c
        grow = TAG if encrypt else -TAG
        if c.sizeof(self._out) < (size := sum(e - s + grow for _, s, e in pieces)):
            self._out = buffer(c, size)
        base, pos = c.addressof(self._out), 0
        last_data, last_address = b"", 0
        for i, ((data, start, end), nonce) in enumerate(zip(pieces, nonces, strict=True)):
            if data is not last_data:
                last_data, last_address = data, address(c, data)
            size = end - start
            if size < (0 if encrypt else TAG):
                raise InvalidTag(i)
            if not self._message(encrypt, base + pos, last_address + start, size, nonce):
                raise InvalidTag(i)
            pos += size + grow
        return memoryview(self._out)[:pos].tobytes()

    def seal(self, pieces: Sequence[Piece], nonces: Sequence[bytes]) -> bytes:
        return self._run(pieces, nonces, True)

    def open(self, pieces: Sequence[Piece], nonces: Sequence[bytes]) -> bytes:
        return self._run(pieces, nonces, False)

    def encrypt(self, nonce: bytes, data: bytes) -> bytes:
        return self._run([(data, 0, len(data))], [nonce], True)

    def decrypt(self, nonce: bytes, data: bytes) -> bytes:
        return self._run([(data, 0, len(data))], [nonce], False)


# -- libsodium (Debian's ``libsodium23``), the preferred backend: each primitive is one plain
# function, ready once ``sodium_init`` has picked the CPU's implementations (0.2 ms with the
# library's loading). Here rather than in a module of its own: ``wal-push`` pays ~0.15 ms for
# every module it imports; OpenSSL's backend, used where libsodium is not installed, is one.

#: libsodium's soname since 1.0.12 (2017); the development link where only that is installed.
_SODIUM_FILES = ("libsodium.so.23", "libsodium.so")


def _sodium_signatures(c: Any) -> dict[str, tuple[Any, list[Any]]]:
    p, i, s, q = c.c_void_p, c.c_int, c.c_char_p, c.c_ulonglong
    return {
        "sodium_init": (i, []),
        # (out, out length or NULL, in, in length, ad, ad length, nsec, nonce, key)
        "crypto_aead_chacha20poly1305_ietf_encrypt": (i, [p, p, p, q, p, q, p, s, s]),
        # (out, out length or NULL, nsec, in, in length, ad, ad length, nonce, key)
        "crypto_aead_chacha20poly1305_ietf_decrypt": (i, [p, p, p, p, q, p, q, s, s]),
        "crypto_scalarmult_curve25519": (i, [p, s, s]),
        "crypto_scalarmult_curve25519_base": (i, [p, s]),
    }


@functools.cache
def libsodium() -> Any | None:
    """libsodium, initialised, its functions typed (and its C types as ``c``); None when it is
    not installed or cannot be used."""
    try:
        c = c_types()
        for path in _SODIUM_FILES:
            try:
                function = c.load(path)
                break
            except OSError:
                continue
        else:
            return None
        lib: Any = Library(c, function, _sodium_signatures(c))
        if lib.sodium_init() < 0:  # (1: already initialised by another user in this process)
            return None
    except (ImportError, OSError, AttributeError):
        return None
    return lib


def sodium_aead(lib: Any, key: bytes) -> NativeAead:
    """libsodium's one-call AEAD: the key and nonce passed with every message."""
    seal = lib.crypto_aead_chacha20poly1305_ietf_encrypt
    unseal = lib.crypto_aead_chacha20poly1305_ietf_decrypt

    def message(sealing: bool, out: int, source: int, size: int, nonce: bytes) -> bool:
        if sealing:
            return bool(seal(out, None, source, size, None, 0, None, nonce, key) == 0)
        return bool(unseal(out, None, None, source, size, None, 0, nonce, key) == 0)

    return NativeAead(lib.c, message)


def sodium_exchange(lib: Any, secret: bytes, peer: bytes | None) -> tuple[bytes, bytes]:
    """(the public key of ``secret``, its shared secret with ``peer`` or b"")."""
    out = buffer(lib.c, KEY)
    own = checked(lib.crypto_scalarmult_curve25519_base(out, secret) == 0, out.raw)
    if peer is None:
        return own, b""
    # (-1 for an all-zero result: a low-order point)
    return own, checked(lib.crypto_scalarmult_curve25519(out, secret, peer) == 0, out.raw)
