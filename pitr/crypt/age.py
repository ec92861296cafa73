"""The age file format (age-encryption.org/v1), X25519 recipients only, as streams.

A file is a text header — one ``X25519`` stanza per recipient wrapping a random 16-byte file
key, closed by an HMAC-SHA256 of the header — then a 16-byte nonce and the payload: the
plaintext in 64 KiB chunks, each sealed with ChaCha20-Poly1305 under a key derived from the
file key and the nonce, the last chunk flagged in its nonce. ``encrypting`` and ``decrypting``
wrap a readable stream and are readable streams themselves: memory stays within a few chunks
whatever the size. Files written here decrypt with ``age -d``; files written by ``age -r``
decrypt here (tests/unit/test_age.py proves both with Debian's ``age``).

The primitives (X25519, ChaCha20-Poly1305) come from ``pitr.crypt.primitives``; HKDF and the
header MAC are HMAC-SHA256 on ``hashlib`` and base64 is ``binascii``'s (``wal-push`` imports
this module once per segment: ``hmac`` and ``base64`` would cost it a millisecond).
"""

from __future__ import annotations

import binascii
import hashlib
import os
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from pitr.domain.streams import Readable

if TYPE_CHECKING:
    from pitr.crypt.primitives import Aead, Piece

MAGIC = b"age-encryption.org/v1"
CHUNK = 64 * 1024
TAG = 16
SEALED_CHUNK = CHUNK + TAG
FILE_KEY = 16
NONCE = 16
MAX_HEADER = 64 * 1024  # a header longer than this is refused, not buffered
_X25519_LABEL = b"age-encryption.org/v1/X25519"
_READ = 1 << 20
BATCH = 16  # chunks sealed or opened in one call: 1 MiB of plaintext


# -- Bech32 (BIP 173) as age uses it for its keys: ``age1…`` and ``AGE-SECRET-KEY-1…``. Unlike
# BIP 173, age puts no limit on the length of a string; mixed case is refused. (Here rather than
# in a module of its own: ``wal-push`` pays for every module it imports.)

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_VALUES = {c: i for i, c in enumerate(_CHARSET)}
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
#: For each value of the 5 bits shifted out, the generators they select, XORed together: one
#: lookup per character instead of five tests (a key is parsed by every ``wal-push``).
#: (Each from the one with its lowest set bit cleared: a module-level loop per ``wal-push``.)
_SELECTED = [0]
for _top in range(1, 32):
    _low = _top & -_top
    _SELECTED.append(_SELECTED[_top ^ _low] ^ _GENERATOR[_low.bit_length() - 1])


class Bech32Error(ValueError):
    """Not a valid bech32 string (the message says why, never repeating the string)."""


def _bech32_polymod(values: list[int]) -> int:
    check = 1
    for value in values:
        check = (check & 0x1FFFFFF) << 5 ^ value ^ _SELECTED[check >> 25]
    return check


def _bech32_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _bech32_regroup(data: bytes | list[int], source: int, dest: int, pad: bool) -> list[int]:
    acc = bits = 0
    out: list[int] = []
    mask = (1 << dest) - 1
    for value in data:
        acc = (acc << source) | value
        bits += source
        while bits >= dest:
            bits -= dest
            out.append((acc >> bits) & mask)
    if pad and bits:
        out.append((acc << (dest - bits)) & mask)
    elif not pad and (bits >= source or (acc << (dest - bits)) & mask):
        raise Bech32Error("non-zero padding")
    return out


def bech32_encode(hrp: str, data: bytes) -> str:
    """``data`` under the human-readable part ``hrp`` (lower case)."""
    words = _bech32_regroup(data, 8, 5, pad=True)
    check = _bech32_polymod([*_bech32_expand(hrp), *words, 0, 0, 0, 0, 0, 0]) ^ 1
    words += [(check >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[w] for w in words)


def bech32_decode(text: str) -> tuple[str, bytes]:
    """The human-readable part (lower case) and the data of ``text``."""
    if text.lower() != text and text.upper() != text:
        raise Bech32Error("mixed case")
    text = text.lower()
    hrp, sep, rest = text.rpartition("1")
    if not sep or not hrp or len(rest) < 6:
        raise Bech32Error("no separator or too short")
    if any(not 33 <= ord(c) <= 126 for c in hrp):
        raise Bech32Error("invalid characters")
    try:
        words = [_VALUES[c] for c in rest]
    except KeyError:
        raise Bech32Error("invalid characters") from None
    if _bech32_polymod([*_bech32_expand(hrp), *words]) != 1:
        raise Bech32Error("bad checksum")
    return hrp, bytes(_bech32_regroup(words[:-6], 5, 8, pad=False))


class AgeError(Exception):
    """A malformed or tampered age file (the message never holds key material)."""


class NoIdentity(AgeError):
    """None of the identities unwraps the file key: the file is for other recipients."""


def _b64(data: bytes) -> bytes:
    return binascii.b2a_base64(data, newline=False).rstrip(b"=")


def _unb64(text: bytes) -> bytes:
    """Canonical unpadded base64, as age requires."""
    try:
        data = binascii.a2b_base64(text + b"=" * (-len(text) % 4), strict_mode=True)
    except binascii.Error:
        raise AgeError("invalid base64 in the header") from None
    if b"=" in text or _b64(data) != text:
        raise AgeError("non-canonical base64 in the header")
    return data


#: RFC 2104's ipad and opad as translation tables (``x ^ 0x36`` for every byte value ``x``),
#: each computed as one XOR of 2048-bit integers rather than a loop.
_BYTES = int.from_bytes(bytes(range(256)))
_INNER = (_BYTES ^ int.from_bytes(b"\x36" * 256)).to_bytes(256)
_OUTER = (_BYTES ^ int.from_bytes(b"\x5c" * 256)).to_bytes(256)


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256 (RFC 2104) for keys of at most 64 bytes (all of age's)."""
    key = key.ljust(64, b"\0")
    inner = hashlib.sha256(key.translate(_INNER) + message).digest()
    return hashlib.sha256(key.translate(_OUTER) + inner).digest()


def _hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    """HKDF-SHA256 (RFC 5869) with a 32-byte output: one block of the expansion."""
    prk = hmac_sha256(salt or bytes(32), ikm)
    return hmac_sha256(prk, info + b"\x01")


def _exchange(secret: bytes, peer: bytes) -> tuple[bytes, bytes]:
    """(the public key of ``secret``, its X25519 shared secret with ``peer``)."""
    from pitr.crypt import primitives  # ctypes: only where keys are used

    try:
        return primitives.exchange(secret, peer)
    except ValueError:  # the all-zero shared secret of a low-order point
        raise AgeError("invalid X25519 share in the header") from None


def _base_point_mult(secret: bytes) -> bytes:
    from pitr.crypt import primitives

    return primitives.x25519(secret, None)


def _aead(key: bytes) -> Aead:
    from pitr.crypt import primitives

    return primitives.chacha20_poly1305(key)


class _Key:
    """A 32-byte key, compared by value. (Plain classes: ``wal-push`` imports this module once
    per segment, and each dataclass costs it half a millisecond to define.)"""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Key) and type(other) is type(self) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class Recipient(_Key):
    """An X25519 public key, written ``age1…``."""

    __slots__ = ()

    @property
    def public(self) -> bytes:
        return self._value

    @classmethod
    def parse(cls, text: str) -> Recipient:
        """``ValueError`` (saying what is wrong, not repeating ``text``) unless an age1 key."""
        try:
            hrp, data = bech32_decode(text)
        except Bech32Error as exc:
            raise ValueError(f"not an age recipient ({exc})") from None
        if hrp != "age" or len(data) != 32 or text != text.lower():
            raise ValueError("not an age X25519 recipient (age1…)")
        return cls(data)

    def __str__(self) -> str:
        return bech32_encode("age", self.public)

    def __repr__(self) -> str:
        return f"Recipient({self})"


class Identity(_Key):
    """An X25519 private key, written ``AGE-SECRET-KEY-1…``; its repr shows only its
    recipient, so that it never lands in a log or a traceback."""

    __slots__ = ()

    @property
    def secret(self) -> bytes:
        return self._value

    @classmethod
    def parse(cls, text: str) -> Identity:
        """``ValueError`` (never repeating ``text``) unless an AGE-SECRET-KEY-1 key."""
        try:
            hrp, data = bech32_decode(text)
        except Bech32Error as exc:
            raise ValueError(f"not an age identity ({exc})") from None
        if hrp != "age-secret-key-" or len(data) != 32 or text != text.upper():
            raise ValueError("not an age X25519 identity (AGE-SECRET-KEY-1…)")
        return cls(data)

    @classmethod
    def generate(cls) -> Identity:
        return cls(os.urandom(32))

    def recipient(self) -> Recipient:
        return Recipient(_base_point_mult(self.secret))

    def __str__(self) -> str:
        return bech32_encode("age-secret-key-", self.secret).upper()

    def __repr__(self) -> str:
        return f"Identity(recipient={self.recipient()})"


def _body_lines(data: bytes) -> bytes:
    """A stanza body: base64 in lines of 64 columns, the last one always shorter."""
    text = _b64(data)
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    if not lines or len(lines[-1]) == 64:
        lines.append(b"")
    return b"".join(line + b"\n" for line in lines)


def _stanza(file_key: bytes, recipient: Recipient) -> bytes:
    share, secret = _exchange(os.urandom(32), recipient.public)
    wrap = _hkdf(secret, share + recipient.public, _X25519_LABEL)
    body = _aead(wrap).encrypt(bytes(12), file_key)
    return b"-> X25519 " + _b64(share) + b"\n" + _body_lines(body)


def _mac(file_key: bytes, header: bytes) -> bytes:
    return hmac_sha256(_hkdf(file_key, b"", b"header"), header)


def header(file_key: bytes, recipients: Sequence[Recipient]) -> bytes:
    """The header wrapping ``file_key`` for each recipient, MAC line included."""
    if not recipients:
        raise ValueError("no recipients")
    text = MAGIC + b"\n" + b"".join(_stanza(file_key, r) for r in recipients) + b"---"
    return text + b" " + _b64(_mac(file_key, text)) + b"\n"


def _chunk_nonce(counter: int, last: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


class _Chunks:
    """Reads ``source`` and hands it to ``transform`` in batches of ``unit``-byte pieces (the
    pieces, the counter of the first, whether the batch ends the stream: known by reading one
    byte beyond it); ``read`` returns what ``transform`` made of them. The pieces point into
    the blocks read (only a piece across two blocks is joined), and memory stays within about
    one batch of input and one of output."""

    def __init__(
        self,
        source: Readable,
        unit: int,
        transform: Callable[[list[Piece], int, bool], bytes],
        prefix: bytes = b"",
        pending: bytes = b"",
    ) -> None:
        self._source = source
        self._unit = unit
        self._transform = transform
        self._blocks: deque[bytes] = deque([pending] if pending else [])
        self._pos = 0  # into the first block
        self._avail = len(pending)
        self._eof = False
        self._done = False
        self._counter = 0
        self._out = prefix
        self._out_pos = 0

    def _fill(self) -> None:
        want = self._unit * BATCH
        while not self._eof and self._avail <= want:
            data = self._source.read(max(_READ, want + 1 - self._avail))
            if data:
                self._blocks.append(data)
                self._avail += len(data)
            else:
                self._eof = True

    def _take(self, size: int) -> Piece:
        """The next ``size`` bytes: where they lie when in one block, else joined."""
        if size == 0:
            return b"", 0, 0
        block, pos = self._blocks[0], self._pos
        if len(block) - pos >= size:
            self._advance(size)
            return block, pos, pos + size
        parts = []
        while size:
            block, pos = self._blocks[0], self._pos
            take = min(size, len(block) - pos)
            parts.append(block[pos : pos + take])
            self._advance(take)
            size -= take
        joined = b"".join(parts)
        return joined, 0, len(joined)

    def _advance(self, size: int) -> None:
        self._avail -= size
        self._pos += size
        if self._pos == len(self._blocks[0]):
            self._blocks.popleft()
            self._pos = 0

    def _step(self) -> bytes:
        self._fill()
        unit, avail = self._unit, self._avail
        last = avail <= unit * BATCH  # then the stream has ended (_fill)
        count = max(1, -(-avail // unit)) if last else BATCH
        sizes = [unit] * (count - 1) + [avail - unit * (count - 1) if last else unit]
        pieces = [self._take(size) for size in sizes]
        produced = self._transform(pieces, self._counter, last)
        self._counter += count
        self._done = last
        return produced

    def read(self, n: int = -1, /) -> bytes:
        while self._out_pos >= len(self._out):
            if self._done:
                return b""
            self._out, self._out_pos = self._step(), 0
        start = self._out_pos
        data = self._out[start : start + n] if n > 0 else self._out[start:]
        self._out_pos += len(data)
        return data


def _nonces(counter: int, count: int, last: bool) -> list[bytes]:
    return [_chunk_nonce(counter + i, last and i == count - 1) for i in range(count)]


def encrypting(source: Readable, recipients: Sequence[Recipient]) -> Readable:
    """``source`` as an age file to ``recipients``, read as it is produced."""
    file_key = os.urandom(FILE_KEY)
    head = header(file_key, recipients)
    nonce = os.urandom(NONCE)
    aead = _aead(_hkdf(file_key, nonce, b"payload"))

    def seal(pieces: list[Piece], counter: int, last: bool) -> bytes:
        return aead.seal(pieces, _nonces(counter, len(pieces), last))

    return _Chunks(source, CHUNK, seal, prefix=head + nonce)


class _Header:
    __slots__ = ("mac", "signed", "stanzas")

    def __init__(
        self, stanzas: tuple[tuple[list[bytes], bytes], ...], mac: bytes, signed: bytes
    ) -> None:
        self.stanzas = stanzas  # (arguments, body) of each
        self.mac = mac
        self.signed = signed  # the header bytes the MAC covers


def _read_header(source: Readable) -> tuple[_Header, bytes]:
    """The parsed header, and the bytes read beyond it."""
    buf = b""
    while True:
        mark = buf.find(b"\n---")
        end = buf.find(b"\n", mark + 1) if mark >= 0 else -1
        if end >= 0:
            break
        if len(buf) > MAX_HEADER:
            raise AgeError("header too long")
        data = source.read(4096)
        if not data:
            raise AgeError("not an age file (no header end)" if buf else "empty file")
        buf += data
    lines = buf[:end].split(b"\n")
    if lines[0] != MAGIC:
        raise AgeError("not an age-encryption.org/v1 file")
    stanzas, i = [], 1
    while i < len(lines) - 1:
        if not lines[i].startswith(b"-> "):
            raise AgeError("malformed stanza in the header")
        args, body = lines[i][3:].split(b" "), b""
        i += 1
        while True:
            if i >= len(lines) - 1 or len(lines[i]) > 64:
                raise AgeError("malformed stanza body in the header")
            body += lines[i]
            i += 1
            if len(lines[i - 1]) < 64:
                break
        stanzas.append((args, _unb64(body)))
    last = lines[-1]
    if not last.startswith(b"--- "):
        raise AgeError("malformed MAC line")
    signed = buf[: mark + 4]
    return _Header(tuple(stanzas), _unb64(last[4:]), signed), buf[end + 1 :]


def _unwrap(head: _Header, identities: Sequence[Identity]) -> bytes:
    from pitr.crypt.primitives import InvalidTag

    for args, body in head.stanzas:
        if args[0] != b"X25519":
            continue
        if len(args) != 2 or len(body) != FILE_KEY + TAG:
            raise AgeError("malformed X25519 stanza")
        share = _unb64(args[1])
        if len(share) != 32:
            raise AgeError("malformed X25519 stanza")
        for identity in identities:
            public, secret = _exchange(identity.secret, share)
            wrap = _hkdf(secret, share + public, _X25519_LABEL)
            try:
                key: bytes = _aead(wrap).decrypt(bytes(12), body)
            except InvalidTag:
                continue
            return key
    raise NoIdentity("no identity matches any recipient of the file")


def decrypting(source: Readable, identities: Sequence[Identity]) -> Readable:
    """The plaintext of the age file ``source``. The header is read and checked now
    (``NoIdentity`` when no identity opens it); each chunk is authenticated as it is read
    (``AgeError`` when a chunk, or the end of the file, was tampered with)."""
    from hmac import compare_digest

    from pitr.crypt.primitives import InvalidTag

    head, rest = _read_header(source)
    file_key = _unwrap(head, identities)
    if not compare_digest(_mac(file_key, head.signed), head.mac):
        raise AgeError("header MAC mismatch")
    while len(rest) < NONCE:
        data = source.read(NONCE)
        if not data:
            raise AgeError("truncated: no payload nonce")
        rest += data
    aead = _aead(_hkdf(file_key, rest[:NONCE], b"payload"))

    def unseal(pieces: list[Piece], counter: int, last: bool) -> bytes:
        _, start, end = pieces[-1]
        if last and end - start < TAG:
            raise AgeError("truncated payload")
        if last and end - start == TAG and counter + len(pieces) > 1:
            raise AgeError("empty last chunk")
        try:
            return aead.open(pieces, _nonces(counter, len(pieces), last))
        except InvalidTag as exc:
            raise AgeError(f"payload chunk {counter + exc.index} does not authenticate") from None

    return _Chunks(source, SEALED_CHUNK, unseal, pending=rest[NONCE:])
