"""The keys this process may use on the repository, from ``[repository]`` (docs/encryption.md).

Writers need only the recipients (public keys): a host that ships backups and logs cannot read
them back. Reading contents needs the identities (private keys) in ``identity_file``, read
when first needed, never logged: a key file's problems are reported by file and line only.

The keyring in use is installed with ``pitr.crypt.install``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pitr.crypt.age import AgeError, Identity, NoIdentity, Recipient
from pitr.domain.streams import Readable
from pitr.errors import ConfigError, VerificationFailed

if TYPE_CHECKING:  # (``wal-push`` imports this module per segment: no class it does not use)
    from typing import Protocol

    class KeySettings(Protocol):
        """What the keyring reads of ``[repository]`` (``config.settings.RepositorySettings``)."""

        @property
        def encryption(self) -> str: ...
        @property
        def recipients(self) -> Sequence[str]: ...
        @property
        def recipients_file(self) -> str | None: ...
        @property
        def identity_file(self) -> str | None: ...


IDENTITY_SETTING = "[repository] identity_file (or PITR_REPOSITORY_IDENTITY_FILE)"


class IdentityMissing(ConfigError):
    """Content must be read and no identity is configured (exit 2)."""


class WrongIdentity(ConfigError):
    """No configured identity decrypts an object (exit 2): it was written for other keys."""


class Keyring:
    """Recipients new objects are encrypted to; where the identities that read them are.
    (A plain class: a dataclass costs ``wal-push`` half a millisecond to define.)"""

    __slots__ = ("identity_file", "recipients")

    def __init__(
        self, recipients: tuple[Recipient, ...] = (), identity_file: str | None = None
    ) -> None:
        self.recipients = recipients
        self.identity_file = identity_file

    @property
    def encrypts(self) -> bool:
        return bool(self.recipients)

    @property
    def can_decrypt(self) -> bool:
        return self.identity_file is not None

    def identities(self, needed_for: str) -> tuple[Identity, ...]:
        """The identities; ``IdentityMissing`` naming ``needed_for`` when none is set."""
        if self.identity_file is None:
            raise IdentityMissing(
                f"{needed_for}: encrypted; reading it needs {IDENTITY_SETTING}",
                hint="run this on a host holding the private key (see docs/encryption.md)",
            )
        return read_identities(self.identity_file)

    def encrypt(self, source: Readable) -> Readable:
        from pitr.crypt.age import encrypting

        return encrypting(source, self.recipients)

    def decrypt(self, source: Readable, key: str) -> Readable:
        """``source`` (the object ``key``) decrypted; the header is checked now."""
        from pitr.crypt.age import decrypting

        identities = self.identities(key)
        try:
            return _Checked(decrypting(source, identities), key)
        except NoIdentity:
            raise WrongIdentity(
                f"{key}: no identity in {self.identity_file} decrypts it",
                hint="it was encrypted to other recipients: add their identity to the file",
            ) from None
        except AgeError as exc:
            raise VerificationFailed(f"{key}: not a valid age file: {exc}") from None

    def seal(self, value: Any) -> str:
        """``value`` as JSON, encrypted to the recipients, in base64: for documents."""
        import binascii
        import io

        stream = self.encrypt(io.BytesIO(json.dumps(value, separators=(",", ":")).encode()))
        return binascii.b2a_base64(_read_all(stream), newline=False).decode()

    def unseal(self, text: str, where: str) -> Any:
        import binascii
        import io

        plain = _read_all(self.decrypt(io.BytesIO(binascii.a2b_base64(text)), where))
        return json.loads(plain)


class _Checked:
    """A decrypting stream whose authentication failures name the object (exit 8)."""

    def __init__(self, stream: Readable, key: str) -> None:
        self._stream = stream
        self._key = key

    def read(self, n: int = -1, /) -> bytes:
        try:
            return self._stream.read(n)
        except AgeError as exc:
            raise VerificationFailed(f"{self._key}: {exc}") from None


def _read_all(stream: Readable) -> bytes:
    parts = []
    while data := stream.read(1 << 20):
        parts.append(data)
    return b"".join(parts)


def _key_lines(path: str, what: str) -> list[tuple[int, str]]:
    """The non-blank, non-comment lines of a key file, numbered."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"{path}: cannot read the {what} file: {reason}") from None
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)]
    found = [(n, line) for n, line in lines if line and not line.startswith("#")]
    if not found:
        raise ConfigError(f"{path}: the {what} file holds no key")
    return found


@functools.cache
def read_identities(path: str) -> tuple[Identity, ...]:
    """Every ``AGE-SECRET-KEY-1…`` line of ``path`` (``age-keygen`` output)."""
    identities = []
    for n, line in _key_lines(path, "identity"):
        try:
            identities.append(Identity.parse(line))
        except ValueError as exc:
            raise ConfigError(f"{path}:{n}: {exc}") from None
    return tuple(identities)


def parse_recipients(inline: Sequence[str], path: str | None, source: str) -> tuple[Recipient, ...]:
    """The recipients listed in the settings and in ``path``; errors name where each was."""
    found = []
    for i, text in enumerate(inline):
        try:
            found.append(Recipient.parse(text.strip()))
        except ValueError as exc:
            raise ConfigError(f"{source}: [repository] recipients[{i}]: {exc}") from None
    for n, line in _key_lines(path, "recipients") if path else ():
        try:
            found.append(Recipient.parse(line))
        except ValueError as exc:
            raise ConfigError(f"{path}:{n}: {exc}") from None
    return tuple(dict.fromkeys(found))


def keyring_of(repo: KeySettings, source: str) -> Keyring:
    """The keyring ``[repository]`` describes (recipients only when ``encryption = "age"``)."""
    recipients: tuple[Recipient, ...] = ()
    if repo.encryption == "age":
        recipients = parse_recipients(repo.recipients, repo.recipients_file, source)
        if not recipients:
            raise ConfigError(
                f'{source}: [repository] encryption = "age" needs recipients or recipients_file'
            )
    return Keyring(recipients, repo.identity_file)


def keyring_for(repo: KeySettings, source: str) -> Keyring | None:
    """What to ``pitr.crypt.install`` for ``[repository]``: None when it neither encrypts
    nor names an identity (nothing of this package is needed then)."""
    if repo.encryption == "none" and repo.identity_file is None:
        return None
    return keyring_of(repo, source)
