"""pitr.toml and PITR_* environment variables → typed, validated settings.

Lookup order (docs/configuration.md): ``--config FILE``, ``$PITR_CONFIG``, ``./pitr.toml``,
``~/.config/pitr/pitr.toml``, ``/etc/pitr/pitr.toml``. Every problem is a ``ConfigError``
(exit 2) naming the file (or environment variable) and the key.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from pitr.config.repository_url import RepositoryUrl, parse_repository_url
from pitr.errors import ConfigError

ENGINES = ("postgresql", "mariadb", "mysql")
DEFAULT_REPOSITORY_URL = "file:///var/lib/pitr/repo"


def _state_dir() -> Path:
    """Per-user state directory: writable by whichever OS user runs pitr (e.g. postgres)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "pitr"


@dataclass(frozen=True)
class RepositorySettings:
    """The ``[repository]`` table: where backups and logs live and how they are written."""

    url: str = DEFAULT_REPOSITORY_URL
    compression: Literal["zstd", "none"] = "zstd"
    compression_level: int = 3
    compression_threads: int = 0  # 0: one per CPU
    concurrency: int = 4  # parallel part uploads / object transfers
    timeout: float = 30.0  # retry budget, seconds, for one storage operation
    # client-side encryption (docs/encryption.md)
    encryption: Literal["none", "age"] = "none"
    recipients: tuple[str, ...] = ()
    recipients_file: str | None = None
    identity_file: str | None = None
    # S3
    endpoint_url: str | None = None
    region: str | None = None
    addressing: Literal["auto", "path", "virtual"] = "auto"
    profile: str | None = None
    sse: Literal["AES256", "aws:kms"] | None = None  # S3 server-side encryption
    sse_kms_key_id: str | None = None
    # Swift
    auth_url: str | None = None
    auth_version: str | None = None
    user: str | None = None
    key: str | None = field(default=None, repr=False, metadata={"secret": True})
    project: str | None = None
    project_domain: str | None = None
    user_domain: str | None = None
    region_name: str | None = None

    @property
    def location(self) -> RepositoryUrl:
        return parse_repository_url(self.url)


@dataclass(frozen=True)
class RetentionSettings:
    """The ``[retention]`` table: how many fulls and how many days of recoverability to keep."""

    full: int | None = None
    days: float | None = None


@dataclass(frozen=True)
class StatusSettings:
    """The ``[status]`` table: thresholds for ``pitr status`` (hours / minutes)."""

    backup_warn_hours: float = 26.0
    backup_crit_hours: float = 50.0
    archive_warn_minutes: float = 15.0
    archive_crit_minutes: float = 60.0
    #: PostgreSQL ``archive --follow``: WAL its replication slot holds on the server
    slot_warn_mb: float = 1024.0
    slot_crit_mb: float = 8192.0
    textfile: str | None = None  # metrics for node_exporter's textfile collector (monitoring.md)


@dataclass(frozen=True)
class LockSettings:
    """The ``[locks]`` table: when a lock held from another host is reported as stale."""

    stale_hours: float = 6.0


@dataclass(frozen=True)
class InstanceSettings:
    """One ``[instances.NAME]`` table: a local database instance pitr protects."""

    name: str
    engine: Literal["postgresql", "mariadb", "mysql"]
    datadir: str | None = None
    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False, metadata={"secret": True})
    socket: str | None = None
    dbname: str | None = None
    bindir: str | None = None
    binlog_dir: str | None = None
    start_command: str | None = None
    stop_command: str | None = None
    backup_tool: str | None = None
    #: MySQL: "clone" (the default: the clone plugin) or "xtrabackup"; MariaDB: mariadb-backup
    backup_method: Literal["clone", "xtrabackup"] | None = None
    #: MySQL clone backups: where the server writes the copy before it is streamed
    clone_dir: str | None = None
    #: ``archive --follow``: seconds between shipments of the open binlog's complete
    #: transactions, or of the partial WAL segment (0: only closed binlogs / complete segments)
    follow_interval: float = 5.0
    #: PostgreSQL standby: the primary pitr asks for what must happen there (the WAL switch
    #: that completes a backup's last segment); its password comes from PGPASSFILE/PGPASSWORD
    primary_host: str | None = None
    primary_port: int | None = None
    primary_user: str | None = None
    #: seconds ``backup`` waits for the last WAL segment it needs to reach the repository
    archive_wait: float = 120.0

    @property
    def clones(self) -> bool:
        """Are this instance's backups made with MySQL's clone plugin?"""
        return self.engine == "mysql" and self.backup_method in (None, "clone")


@dataclass(frozen=True)
class Settings:
    """Everything pitr knows from its configuration, validated."""

    source: str  # the file (or "environment") the settings came from, for messages
    repository: RepositorySettings
    instances: Mapping[str, InstanceSettings]
    retention: RetentionSettings = RetentionSettings()
    status: StatusSettings = StatusSettings()
    locks: LockSettings = LockSettings()
    timezone: str | None = None
    lock_dir: str = field(default_factory=lambda: str(_state_dir() / "locks"))
    spool_dir: str = field(default_factory=lambda: str(_state_dir() / "spool"))

    def instance(self, name: str | None) -> InstanceSettings:
        """The instance called ``name``, or the only one when ``name`` is None."""
        if name is None:
            if len(self.instances) == 1:
                return next(iter(self.instances.values()))
            if not self.instances:
                raise ConfigError(f"{self.source}: no [instances.NAME] table is configured")
            names = ", ".join(sorted(self.instances))
            raise ConfigError(
                f"{self.source}: several instances are configured ({names}): choose one",
                hint="pass --instance NAME or set PITR_INSTANCE",
            )
        try:
            return self.instances[name]
        except KeyError:
            known = ", ".join(sorted(self.instances)) or "none"
            raise ConfigError(
                f"{self.source}: unknown instance {name!r} (configured: {known})"
            ) from None

    def secrets(self) -> list[str]:
        """Every secret value in the settings, so logging can redact them."""
        found: list[str] = []
        sections: list[Any] = [self.repository, *self.instances.values()]
        for obj in sections:
            for f in dataclasses.fields(obj):
                value = getattr(obj, f.name)
                if f.metadata.get("secret") and value:
                    found.append(str(value))
        return found


def candidate_paths(explicit: str | None, env: Mapping[str, str]) -> list[Path]:
    """Config file lookup order (docs/configuration.md)."""
    if explicit:
        return [Path(explicit)]
    if env.get("PITR_CONFIG"):
        return [Path(env["PITR_CONFIG"])]
    return [
        Path("pitr.toml"),
        Path.home() / ".config" / "pitr" / "pitr.toml",
        Path("/etc/pitr/pitr.toml"),
    ]


def load_settings(
    explicit: str | None = None, env: Mapping[str, str] | None = None, *, parse_keys: bool = True
) -> Settings:
    """Find, parse and validate the configuration; apply ``PITR_*`` overrides. Without
    ``parse_keys`` the recipients are left for the keyring to parse when it is built, with the
    same errors: ``wal-push`` and ``wal-fetch`` build it next, and parse them once."""
    env = os.environ if env is None else env
    paths = candidate_paths(explicit, env)
    explicit_path = explicit or env.get("PITR_CONFIG")
    for path in paths:
        if path.is_file():
            return _from_document(str(path), _read_toml(path), env, parse_keys)
        if explicit_path:
            raise ConfigError(f"{path}: configuration file not found")
    if env.get("PITR_REPOSITORY_URL"):
        return _from_document("environment", {}, env, parse_keys)
    looked = ", ".join(str(p) for p in paths)
    raise ConfigError(
        f"no configuration file found (looked for {looked})",
        hint="write a pitr.toml (see docs/configuration.md) or pass --config FILE",
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


_TOP_LEVEL = {"timezone", "lock_dir", "spool_dir"}
_TABLES: dict[str, type[Any]] = {
    "repository": RepositorySettings,
    "retention": RetentionSettings,
    "status": StatusSettings,
    "locks": LockSettings,
}


def _from_document(
    source: str, doc: dict[str, Any], env: Mapping[str, str], parse_keys: bool
) -> Settings:
    unknown = set(doc) - _TOP_LEVEL - set(_TABLES) - {"instances"}
    if unknown:
        raise ConfigError(f"{source}: unknown key(s): {', '.join(sorted(unknown))}")
    tables: dict[str, Any] = {}
    for name, cls in _TABLES.items():
        raw = doc.get(name, {})
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: [{name}] must be a table")
        merged = dict(raw)
        merged.update(_env_overrides(cls, f"PITR_{name.upper()}_", env, skip=()))
        tables[name] = _build(cls, merged, source, f"[{name}]")
    top: dict[str, Any] = {k: doc[k] for k in _TOP_LEVEL if k in doc}
    for key in _TOP_LEVEL:
        if f"PITR_{key.upper()}" in env:
            top[key] = env[f"PITR_{key.upper()}"]
    for key, value in top.items():
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {key}: expected a string")
    instances = _instances(source, doc.get("instances", {}), env)
    settings = Settings(source=source, instances=instances, **tables, **top)
    _validate(settings, env, parse_keys)
    return settings


def _instances(source: str, raw: object, env: Mapping[str, str]) -> dict[str, InstanceSettings]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: [instances] must contain [instances.NAME] tables")
    selected = env.get("PITR_INSTANCE")
    result: dict[str, InstanceSettings] = {}
    for name, table in raw.items():
        where = f"[instances.{name}]"
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: {where} must be a table")
        merged = dict(table)
        # PITR_INSTANCE_<KEY> applies to the selected instance (or the only one).
        if selected == name or (selected is None and len(raw) == 1):
            merged.update(_env_overrides(InstanceSettings, "PITR_INSTANCE_", env, {"name"}))
        merged["name"] = name
        if "engine" not in merged:
            raise ConfigError(f"{source}: {where} engine: missing (one of {', '.join(ENGINES)})")
        result[name] = _build(InstanceSettings, merged, source, where)
    return result


def _env_overrides(
    cls: type[Any], prefix: str, env: Mapping[str, str], skip: tuple[str, ...] | set[str]
) -> dict[str, Any]:
    """``PREFIX<FIELD>`` variables for each field of ``cls``, as strings tagged for coercion."""
    found: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        var = prefix + f.name.upper()
        if f.name not in skip and var in env:
            found[f.name] = _EnvValue(var, env[var])
    return found


@dataclass(frozen=True)
class _EnvValue:
    """A string from the environment: coerced to the field's type, named in errors."""

    var: str
    text: str


def _build(cls: type[Any], raw: dict[str, Any], source: str, where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{source}: {where} unknown key(s): {', '.join(unknown)}")
    values: dict[str, Any] = {}
    hints = _type_hints(cls)
    for key, value in raw.items():
        values[key] = _coerce(value, hints[key], source, where, key)
    return cls(**values)


def _type_hints(cls: type[Any]) -> dict[str, Any]:
    import typing

    return typing.get_type_hints(cls)


def _coerce(value: Any, hint: Any, source: str, where: str, key: str) -> Any:
    """Check ``value`` against the field type ``hint``; environment strings are converted."""
    import typing

    args = typing.get_args(hint)
    optional = type(None) in args
    base = [a for a in args if a is not type(None)] if optional else [hint]
    target = base[0]
    label = f"{source}: {where} {key}"
    if isinstance(value, _EnvValue):
        label = f"environment {value.var}"
        value = _from_env_text(value.text, target, label)
    if typing.get_origin(target) is tuple:  # a list of strings
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{label}: expected a list of strings")
        return tuple(value)
    if typing.get_origin(target) is Literal:
        choices = typing.get_args(target)
        if value not in choices:
            raise ConfigError(f"{label}: {value!r} is not one of {', '.join(map(str, choices))}")
        return value
    if target is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, target) or (target is int and isinstance(value, bool)):
        raise ConfigError(f"{label}: expected {_type_name(target)}, got {_type_name(type(value))}")
    return value


def _from_env_text(text: str, target: Any, label: str) -> Any:
    import typing

    try:
        if target is int:
            return int(text)
        if target is float:
            return float(text)
        if typing.get_origin(target) is tuple:  # comma- or space-separated
            return text.replace(",", " ").split()
    except ValueError:
        raise ConfigError(f"{label}: expected {_type_name(target)}, got {text!r}") from None
    return text


def _type_name(t: Any) -> str:
    return cast(
        str,
        {int: "an integer", float: "a number", str: "a string", bool: "a boolean"}.get(
            t, getattr(t, "__name__", str(t))
        ),
    )


#: The Swift credentials a repository needs, and the variables that stand in for each: checked
#: when the configuration is read, and used by ``pitr.storage.swift`` to connect.
SWIFT_CREDENTIALS = {
    "auth_url": ("ST_AUTH", "OS_AUTH_URL"),
    "user": ("ST_USER", "OS_USERNAME"),
    "key": ("ST_KEY", "OS_PASSWORD"),
}


def swift_credential(repo: RepositorySettings, key: str, env: Mapping[str, str]) -> str | None:
    """A Swift credential (a key of ``SWIFT_CREDENTIALS``): the file's, else its variables'."""
    value: str | None = getattr(repo, key)
    for var in SWIFT_CREDENTIALS[key]:
        value = value or env.get(var)
    return value


def _validate(settings: Settings, env: Mapping[str, str], parse_keys: bool) -> None:
    repo = settings.repository
    src = settings.source
    try:
        location = parse_repository_url(repo.url)
    except ConfigError as exc:
        raise ConfigError(f"{src}: [repository] url: {exc.message}", hint=exc.hint) from None
    if location.scheme == "swift":
        missing = [
            k for k, names in SWIFT_CREDENTIALS.items() if not swift_credential(repo, k, env)
        ]
        if missing:
            raise ConfigError(
                f"{src}: [repository] {', '.join(missing)}: not set for a swift:// repository",
                hint="set them in the file or through ST_AUTH/ST_USER/ST_KEY "
                "(or OS_AUTH_URL/OS_USERNAME/OS_PASSWORD)",
            )
    _validate_encryption(repo, location.scheme, src, parse_keys)
    if not 1 <= repo.compression_level <= 22:
        raise ConfigError(f"{src}: [repository] compression_level: must be between 1 and 22")
    if repo.compression_threads < 0 or repo.concurrency < 1:
        raise ConfigError(f"{src}: [repository] compression_threads/concurrency: must be positive")
    if repo.timeout <= 0:
        raise ConfigError(f"{src}: [repository] timeout: must be a positive number of seconds")
    if settings.retention.full is not None and settings.retention.full < 1:
        raise ConfigError(f"{src}: [retention] full: must keep at least one full backup")
    if not 0 < settings.status.slot_warn_mb <= settings.status.slot_crit_mb:
        raise ConfigError(f"{src}: [status] slot_warn_mb, slot_crit_mb: must be positive, "
                          "warn at most crit")  # fmt: skip
    if settings.locks.stale_hours <= 0:
        raise ConfigError(f"{src}: [locks] stale_hours: must be a positive number of hours")
    for inst in settings.instances.values():
        if inst.port is not None and not 0 < inst.port < 65536:
            raise ConfigError(f"{src}: [instances.{inst.name}] port: not a TCP port")
        if inst.follow_interval < 0:
            raise ConfigError(f"{src}: [instances.{inst.name}] follow_interval: must be 0 or "
                              "a positive number of seconds")  # fmt: skip
        _validate_primary(inst, src)
        if inst.backup_method is not None and inst.engine != "mysql":
            raise ConfigError(f"{src}: [instances.{inst.name}] backup_method: MySQL only "
                              f"({inst.engine} backups are made with mariadb-backup)")  # fmt: skip
    if settings.timezone is not None:
        from pitr.domain.timeutil import zone

        try:
            zone(settings.timezone)
        except ConfigError as exc:
            raise ConfigError(f"{src}: timezone: {exc.message}") from None


def _validate_primary(inst: InstanceSettings, src: str) -> None:
    """``primary_*`` name a PostgreSQL standby's primary: a host first, a real port."""
    where = f"{src}: [instances.{inst.name}]"
    given = [k for k in ("primary_host", "primary_port", "primary_user") if getattr(inst, k)]
    if given and inst.engine != "postgresql":
        raise ConfigError(f"{where} {given[0]}: PostgreSQL only (the primary of a standby)")
    if given and inst.primary_host is None:
        raise ConfigError(
            f"{where} {given[0]}: needs primary_host", hint="set primary_host to the primary's "
            "address (or socket directory)",
        )  # fmt: skip
    if inst.primary_host == "":
        raise ConfigError(f"{where} primary_host: must not be empty")
    if inst.primary_port is not None and not 0 < inst.primary_port < 65536:
        raise ConfigError(f"{where} primary_port: not a TCP port")
    if inst.archive_wait <= 0:
        raise ConfigError(f"{where} archive_wait: must be a positive number of seconds")


def _validate_encryption(repo: RepositorySettings, scheme: str, src: str, parse_keys: bool) -> None:
    """Recipients parse (key files are named with their line on error); SSE is S3's."""
    if repo.encryption == "age" and parse_keys:
        from pitr.crypt.keyring import keyring_of

        keyring_of(repo, src)
    if repo.sse is not None and scheme != "s3":
        raise ConfigError(f"{src}: [repository] sse: only for s3:// repositories")
    if repo.sse_kms_key_id is not None and repo.sse != "aws:kms":
        raise ConfigError(f'{src}: [repository] sse_kms_key_id: needs sse = "aws:kms"')
