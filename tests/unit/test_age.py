"""The age format: interoperability with Debian's ``age`` both ways (chunk boundaries, several
recipients, the empty file), streaming in bounded pieces, and tampering refused."""

from __future__ import annotations

import ctypes
import hmac
import io
import os
import subprocess
from pathlib import Path

import pytest

from pitr.crypt import native, openssl, primitives
from pitr.crypt.age import (
    BATCH,
    CHUNK,
    AgeError,
    Bech32Error,
    Identity,
    NoIdentity,
    Recipient,
    bech32_decode,
    decrypting,
    encrypting,
    hmac_sha256,
)
from pitr.domain.streams import Readable

#: Around the chunk boundaries: the empty file, one byte, a chunk less one, exactly one or two
#: chunks (the last chunk is full, flagged last), one byte more, several chunks; and around the
#: batches of chunks sealed in one call (the last batch full, one chunk more).
SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 2 * CHUNK + 1, 5 * CHUNK + 12345,
         BATCH * CHUNK, BATCH * CHUNK + 1, (2 * BATCH + 1) * CHUNK]  # fmt: skip


def drain(stream: Readable, piece: int = 10_000) -> bytes:
    out = []
    while data := stream.read(piece):
        assert len(data) <= piece
        out.append(data)
    return b"".join(out)


@pytest.fixture(scope="module")
def keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Identity, str]:
    """An identity made by ``age-keygen`` (the file, the parsed identity, its age1 key)."""
    path = tmp_path_factory.mktemp("age") / "identity.txt"
    done = subprocess.run(
        ["age-keygen", "-o", str(path)], check=False, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    public = done.stderr.split()[-1]
    secret = next(line for line in path.read_text().splitlines() if line.startswith("AGE-"))
    return path, Identity.parse(secret), public


def test_keys_parse_as_age_prints_them(keypair: tuple[Path, Identity, str]) -> None:
    _, identity, public = keypair
    assert str(identity.recipient()) == public
    assert Recipient.parse(public) == identity.recipient()
    assert str(Identity.parse(str(identity))) == str(identity)
    assert str(identity) not in repr(identity) and public in repr(identity)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "age1",
        "age1qqqq",
        "AGE1" + "q" * 58,
        "xyz1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs",
    ],
)
def test_malformed_recipients_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        Recipient.parse(text)


def test_a_recipient_with_a_bad_checksum_is_refused(keypair: tuple[Path, Identity, str]) -> None:
    public = keypair[2]
    flipped = public[:-1] + ("q" if public[-1] != "q" else "p")
    with pytest.raises(ValueError, match="checksum"):
        Recipient.parse(flipped)
    with pytest.raises(Bech32Error):
        bech32_decode(public[:10] + public[10:].upper())


@pytest.mark.parametrize("size", SIZES)
def test_ours_decrypts_with_age(size: int, keypair: tuple[Path, Identity, str]) -> None:
    path, identity, _ = keypair
    data = os.urandom(size)
    other = Identity.generate().recipient()
    sealed = drain(encrypting(io.BytesIO(data), [other, identity.recipient()]), 7777)
    done = subprocess.run(
        ["age", "-d", "-i", str(path)], input=sealed, capture_output=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == data


@pytest.mark.parametrize("size", SIZES)
def test_age_output_decrypts_here(size: int, keypair: tuple[Path, Identity, str]) -> None:
    _, identity, public = keypair
    data = os.urandom(size)
    other = str(Identity.generate().recipient())
    done = subprocess.run(
        ["age", "-r", other, "-r", public], input=data, capture_output=True, check=True
    )
    assert drain(decrypting(io.BytesIO(done.stdout), [Identity.generate(), identity])) == data


@pytest.mark.parametrize("backend", primitives.BACKENDS)
def test_each_backend_writes_and_reads_what_age_does(
    backend: str, keypair: tuple[Path, Identity, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The format on each backend alone, as on a host that has only that one (no libsodium,
    or neither library), against the ``age`` CLI both ways, across a batch boundary."""
    monkeypatch.setattr(primitives, "BACKENDS", (backend,))
    assert primitives.backend() == backend
    path, identity, public = keypair
    data = os.urandom(BATCH * CHUNK + 1)
    sealed = drain(encrypting(io.BytesIO(data), [identity.recipient()]))
    done = subprocess.run(
        ["age", "-d", "-i", str(path)], input=sealed, capture_output=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == data
    theirs = subprocess.run(["age", "-r", public], input=data, capture_output=True, check=True)
    assert drain(decrypting(io.BytesIO(theirs.stdout), [identity])) == data


def test_a_file_for_other_recipients_is_no_identity(keypair: tuple[Path, Identity, str]) -> None:
    sealed = drain(encrypting(io.BytesIO(b"x"), [Identity.generate().recipient()]))
    with pytest.raises(NoIdentity):
        decrypting(io.BytesIO(sealed), [keypair[1]])


@pytest.mark.parametrize("where", ["header", "payload", "truncated", "extended"])
def test_tampering_is_detected(where: str, keypair: tuple[Path, Identity, str]) -> None:
    identity = keypair[1]
    sealed = bytearray(drain(encrypting(io.BytesIO(os.urandom(3 * CHUNK)), [identity.recipient()])))
    if where == "header":
        sealed[30] ^= 1
    elif where == "payload":
        sealed[-100] ^= 1
    elif where == "truncated":
        del sealed[-CHUNK - 16 :]  # a whole last chunk gone: the previous one was not last
    else:
        sealed += sealed[-CHUNK - 16 :]
    with pytest.raises(AgeError):
        drain(decrypting(io.BytesIO(bytes(sealed)), [identity]))


class _Trickle:
    """A source returning at most ``n`` bytes per read (as pipes and decompressors may)."""

    def __init__(self, data: bytes, n: int) -> None:
        self._data = io.BytesIO(data)
        self._n = n

    def read(self, n: int = -1, /) -> bytes:
        return self._data.read(min(self._n, n if n > 0 else self._n))


def test_short_reads_both_ways() -> None:
    identity = Identity.generate()
    data = os.urandom(3 * CHUNK + 5)
    sealed = drain(encrypting(_Trickle(data, 1000), [identity.recipient()]), 999)
    assert drain(decrypting(_Trickle(sealed, 333), [identity]), 4096) == data


def test_libsodium_is_the_backend_in_use_here() -> None:
    """scripts/bootstrap installs libsodium23, the preferred backend; libcrypto is always there
    (the one ``hashlib`` uses), ready to serve where libsodium is not."""
    assert primitives.backend() == primitives.LIBSODIUM
    assert native.libsodium() is not None
    assert openssl.libcrypto() is not None


def _others(backend: str) -> list[str]:
    return [other for other in primitives.BACKENDS if other != backend]


@pytest.mark.parametrize("backend", primitives.BACKENDS)
def test_the_primitive_backends_agree(backend: str) -> None:
    """Each backend against RFC 7748's vector and against the two others, both ways."""
    scalar = bytes.fromhex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4")
    point = bytes.fromhex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c")
    expected = "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"
    assert primitives.x25519(scalar, point, backend=backend).hex() == expected  # RFC 7748
    a, b = os.urandom(32), os.urandom(32)
    pa, pb = (primitives.x25519(s, None, backend=backend) for s in (a, b))
    shared = primitives.exchange(a, pb, backend=backend)
    assert shared[0] == pa
    for other in _others(backend):
        assert primitives.x25519(b, pa, backend=other) == shared[1]
        assert primitives.exchange(a, pb, backend=other) == shared
    for low_order in (bytes(32), b"\x01" + bytes(31)):
        with pytest.raises(ValueError):
            primitives.x25519(a, low_order, backend=backend)
    key, nonce = os.urandom(32), os.urandom(12)
    sealed = primitives.chacha20_poly1305(key, backend=backend).encrypt(nonce, b"data" * 999)
    for other in _others(backend):
        assert primitives.chacha20_poly1305(key, backend=other).decrypt(nonce, sealed) == (
            b"data" * 999
        )
    for any_backend in primitives.BACKENDS:
        aead = primitives.chacha20_poly1305(key, backend=any_backend)
        with pytest.raises(primitives.InvalidTag):
            aead.decrypt(nonce, sealed[:-1] + bytes([sealed[-1] ^ 1]))
        with pytest.raises(primitives.InvalidTag):
            aead.decrypt(nonce, sealed[: primitives.TAG - 1])


def test_the_public_ctypes_module_serves_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where ctypes' C core cannot be used as ``c_types`` uses it, the public module's types
    give both native backends the same results (only a slower import)."""
    key, nonce = os.urandom(32), os.urandom(12)
    expected = primitives.chacha20_poly1305(key).encrypt(nonce, b"data" * 999)
    secret, peer = os.urandom(32), primitives.x25519(os.urandom(32), None)
    shared = primitives.exchange(secret, peer)

    def unusable() -> None:
        raise AttributeError("_SimpleCData")

    loaders = (native.c_types, openssl.libcrypto, native.libsodium)
    monkeypatch.setattr(native, "_private", unusable)
    for loader in loaders:
        loader.cache_clear()
    try:
        assert native.c_types().c_int is ctypes.c_int
        for backend in (primitives.LIBSODIUM, primitives.LIBCRYPTO):
            aead = primitives.chacha20_poly1305(key, backend=backend)
            assert aead.encrypt(nonce, b"data" * 999) == expected
            assert primitives.exchange(secret, peer, backend=backend) == shared
    finally:
        for loader in loaders:
            loader.cache_clear()


def test_hmac_sha256_is_the_standard_one() -> None:
    for size in (0, 1, 16, 32, 64):
        key, message = os.urandom(size), os.urandom(100)
        assert hmac_sha256(key, message) == hmac.digest(key, message, "sha256")


@pytest.mark.parametrize("backend", primitives.BACKENDS)
def test_many_messages_at_once_where_they_lie(backend: str) -> None:
    """Pieces of one buffer sealed in one call (a nonce each) open one by one with another
    backend; a damaged piece is named by its index, by every backend."""
    key, data = os.urandom(32), os.urandom(1000)
    cuts = [(0, 0), (0, 10), (10, 500), (500, 1000)]
    nonces = [os.urandom(12) for _ in cuts]
    sealed = primitives.chacha20_poly1305(key, backend=backend).seal(
        [(data, s, e) for s, e in cuts], nonces
    )
    other = primitives.chacha20_poly1305(key, backend=_others(backend)[0])
    pieces, at = [], 0
    for (start, end), nonce in zip(cuts, nonces, strict=True):
        size = end - start + primitives.TAG
        assert other.decrypt(nonce, sealed[at : at + size]) == data[start:end]
        pieces.append((sealed, at, at + size))
        at += size
    assert other.open(pieces, nonces) == data
    damaged = bytearray(sealed)
    damaged[pieces[2][1] + 3] ^= 1
    for any_backend in primitives.BACKENDS:
        aead = primitives.chacha20_poly1305(key, backend=any_backend)
        with pytest.raises(primitives.InvalidTag) as caught:
            aead.open([(bytes(damaged), s, e) for _, s, e in pieces], nonces)
        assert caught.value.index == 2
