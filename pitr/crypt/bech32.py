"""Bech32 (BIP 173) as age uses it for its keys: ``age1…`` and ``AGE-SECRET-KEY-1…``.

Unlike BIP 173, age puts no limit on the length of a string; mixed case is refused.
"""

from __future__ import annotations

CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_VALUES = {c: i for i, c in enumerate(CHARSET)}
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
#: For each value of the 5 bits shifted out, the generators they select, XORed together: one
#: lookup per character instead of five tests (a key is parsed by every ``wal-push``).
_SELECTED = [0] * 32
for _top in range(1, 32):
    for _i, _gen in enumerate(_GENERATOR):
        if (_top >> _i) & 1:
            _SELECTED[_top] ^= _gen


class Bech32Error(ValueError):
    """Not a valid bech32 string (the message says why, never repeating the string)."""


def _polymod(values: list[int]) -> int:
    check = 1
    for value in values:
        check = (check & 0x1FFFFFF) << 5 ^ value ^ _SELECTED[check >> 25]
    return check


def _expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _regroup(data: bytes | list[int], source: int, dest: int, pad: bool) -> list[int]:
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


def encode(hrp: str, data: bytes) -> str:
    """``data`` under the human-readable part ``hrp`` (lower case)."""
    words = _regroup(data, 8, 5, pad=True)
    check = _polymod([*_expand(hrp), *words, 0, 0, 0, 0, 0, 0]) ^ 1
    words += [(check >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(CHARSET[w] for w in words)


def decode(text: str) -> tuple[str, bytes]:
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
    if _polymod([*_expand(hrp), *words]) != 1:
        raise Bech32Error("bad checksum")
    return hrp, bytes(_regroup(words[:-6], 5, 8, pad=False))
