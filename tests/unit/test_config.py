"""Configuration: lookup order, one-line errors naming file and key, PITR_* overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from pitr.config.repository_url import parse_repository_url
from pitr.config.settings import load_settings
from pitr.errors import ConfigError
from pitr.storage.swift import connection_options

GOOD = """
timezone = "Europe/Paris"
[repository]
url = "s3://my-bucket/pitr/prod"
endpoint_url = "http://127.0.0.1:9000"
region = "eu-west-1"
addressing = "path"
compression_level = 6

[retention]
full = 2
days = 7

[instances.main]
engine = "postgresql"
datadir = "/var/lib/postgresql/15/main"
port = 5432

[instances.shop]
engine = "mariadb"
socket = "/run/mysqld/mysqld.sock"
"""


def write(tmp_path: Path, text: str, name: str = "pitr.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_good_config(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, GOOD), env={})
    assert settings.repository.location.container == "my-bucket"
    assert settings.repository.location.prefix == "pitr/prod"
    assert settings.repository.compression_level == 6
    assert settings.retention.full == 2 and settings.retention.days == 7.0
    assert settings.instance("main").port == 5432
    assert settings.instance("shop").engine == "mariadb"
    assert settings.timezone == "Europe/Paris"


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    write(tmp_path, '[repository]\nurl = "file:///cwd"\n')
    env_file = write(tmp_path, '[repository]\nurl = "file:///env"\n', "env.toml")
    explicit = write(tmp_path, '[repository]\nurl = "file:///explicit"\n', "explicit.toml")
    assert load_settings(None, env={}).repository.url == "file:///cwd"
    assert load_settings(None, env={"PITR_CONFIG": env_file}).repository.url == "file:///env"
    assert (
        load_settings(explicit, env={"PITR_CONFIG": env_file}).repository.url == "file:///explicit"
    )


def test_missing_explicit_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_settings(str(tmp_path / "nope.toml"), env={})


def test_environment_only_configuration() -> None:
    settings = load_settings(None, env={"PITR_CONFIG": "", "PITR_REPOSITORY_URL": "file:///r"})
    assert settings.source == "environment"
    assert settings.repository.url == "file:///r"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[repository\n", "not valid TOML"),
        ('[repository]\nurl = "file:///r"\nbogus = 1\n', "[repository] unknown key(s): bogus"),
        ("colour = 1\n", "unknown key(s): colour"),
        ('[repository]\nurl = "ftp://host/x"\n', "unknown scheme 'ftp'"),
        ('[repository]\nurl = "s3:///prefix"\n', "bucket name is empty"),
        ('[repository]\nurl = "s3://Bad_Bucket/x"\n', "not a valid S3 bucket name"),
        ('[repository]\nurl = "swift:///x"\n', "container name is empty"),
        ('[repository]\nurl = "file://relative/path"\n', "names a local path"),
        ('[repository]\nurl = "/plain/path"\n', "not a URL"),
        ('[repository]\ncompression_level = "3"\n', "compression_level: expected an integer"),
        ("[repository]\ncompression_level = 99\n", "between 1 and 22"),
        ('[repository]\ncompression = "lz4"\n', "is not one of zstd, none"),
        ("[repository]\ntimeout = true\n", "timeout: expected a number"),
        ('[instances.a]\nengine = "oracle"\n', "[instances.a] engine: 'oracle' is not one of"),
        ("[instances.a]\ndatadir = '/x'\n", "[instances.a] engine: missing"),
        ('[instances.a]\nengine = "mysql"\nport = "3306"\n', "port: expected an integer"),
        ('[instances.a]\nengine = "mysql"\nport = 70000\n', "port: not a TCP port"),
        ('[instances.a]\nengine = "mysql"\nflavour = 1\n', "[instances.a] unknown key(s)"),
        ('timezone = "Mars/Olympus"\n', "unknown time zone"),
        ("[retention]\nfull = 0\n", "keep at least one full"),
        ("[locks]\nstale_hours = 0\n", "[locks] stale_hours: must be a positive number"),
        ('[locks]\nstale_hours = "6h"\n', "[locks] stale_hours: expected a number"),
        ("[locks]\nstale_after = 6\n", "[locks] unknown key(s): stale_after"),
        ('[repository]\nurl = "swift://c/x"\n', "[repository] auth_url, user, key: not set"),
        ('[repository]\nurl = "swift://c/x"\nuser = "u"\nkey = "k"\n', "] auth_url: not set"),
        ("instances = 3\n", "[instances] must contain"),
        ('[instances.a]\nengine = "mysql"\nprimary_host = "h"\n', "primary_host: PostgreSQL only"),
        ('[instances.a]\nengine = "postgresql"\nprimary_port = 5432\n', "needs primary_host"),
        ('[instances.a]\nengine = "postgresql"\nprimary_user = "u"\n', "needs primary_host"),
        ('[instances.a]\nengine = "postgresql"\nprimary_host = ""\n', "must not be empty"),
        (
            '[instances.a]\nengine = "postgresql"\nprimary_host = "h"\nprimary_port = 0\n',
            "primary_port: not a TCP port",
        ),
        ('[instances.a]\nengine = "postgresql"\nprimary_port = "x"\n', "expected an integer"),
        ('[instances.a]\nengine = "postgresql"\narchive_wait = 0\n', "archive_wait: must be"),
    ],
)
def test_bad_config_is_one_line_naming_file_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_settings(path, env={})
    assert message in err.value.message
    assert err.value.message.startswith(path)
    assert "\n" not in err.value.message
    assert err.value.exit_code == 2


def test_standby_settings(tmp_path: Path) -> None:
    """A standby names its primary (its password never in the file); environment works too."""
    path = write(
        tmp_path,
        '[instances.main]\nengine = "postgresql"\nprimary_host = "10.0.0.1"\n'
        'primary_port = 5433\nprimary_user = "pitr"\narchive_wait = 30\n',
    )
    inst = load_settings(path, env={}).instance("main")
    assert (inst.primary_host, inst.primary_port, inst.primary_user) == ("10.0.0.1", 5433, "pitr")
    assert inst.archive_wait == 30.0
    env = {"PITR_INSTANCE_PRIMARY_PORT": "6000", "PITR_INSTANCE_ARCHIVE_WAIT": "2.5"}
    inst = load_settings(path, env=env).instance("main")
    assert (inst.primary_port, inst.archive_wait) == (6000, 2.5)
    plain = write(tmp_path, '[instances.main]\nengine = "postgresql"\n', "plain.toml")
    inst = load_settings(plain, env={}).instance("main")
    assert inst.primary_host is None and inst.archive_wait == 120.0


def test_environment_overrides(tmp_path: Path) -> None:
    path = write(
        tmp_path, '[repository]\nurl = "file:///r"\n[instances.main]\nengine="postgresql"\n'
    )
    settings = load_settings(
        path,
        env={
            "PITR_REPOSITORY_URL": "s3://other-bucket",
            "PITR_REPOSITORY_TIMEOUT": "12.5",
            "PITR_REPOSITORY_CONCURRENCY": "8",
            "PITR_INSTANCE_PORT": "5433",
            "PITR_TIMEZONE": "UTC",
            "PITR_RETENTION_DAYS": "3",
        },
    )
    assert settings.repository.url == "s3://other-bucket"
    assert settings.repository.timeout == 12.5
    assert settings.repository.concurrency == 8
    assert settings.instance(None).port == 5433
    assert settings.timezone == "UTC"
    assert settings.retention.days == 3.0


def test_lock_stale_age(tmp_path: Path) -> None:
    path = write(tmp_path, '[repository]\nurl = "file:///r"\n')
    assert load_settings(path, env={}).locks.stale_hours == 6.0
    path = write(tmp_path, '[repository]\nurl = "file:///r"\n[locks]\nstale_hours = 1\n')
    assert load_settings(path, env={}).locks.stale_hours == 1.0
    env = {"PITR_LOCKS_STALE_HOURS": "0.5"}
    assert load_settings(path, env=env).locks.stale_hours == 0.5
    with pytest.raises(ConfigError, match="environment PITR_LOCKS_STALE_HOURS: expected a number"):
        load_settings(path, env={"PITR_LOCKS_STALE_HOURS": "6h"})


@pytest.mark.parametrize(
    "env",
    [
        {"ST_AUTH": "http://swift/auth/v1.0", "ST_USER": "a:u", "ST_KEY": "k"},
        {"OS_AUTH_URL": "http://keystone/v3", "OS_USERNAME": "u", "OS_PASSWORD": "p"},
        {"ST_AUTH": "http://swift/auth/v1.0", "OS_USERNAME": "u", "ST_KEY": "k"},
    ],
)
def test_swift_credentials_from_the_environment(tmp_path: Path, env: dict[str, str]) -> None:
    """The configuration accepts exactly what the Swift driver will connect with."""
    path = write(tmp_path, '[repository]\nurl = "swift://c/x"\n')
    repository = load_settings(path, env=env).repository
    assert connection_options(repository, env)["authurl"].startswith("http://")
    for missing in env:
        partial = {k: v for k, v in env.items() if k != missing}
        with pytest.raises(ConfigError, match="not set"):
            load_settings(path, env=partial)
        with pytest.raises(ConfigError, match="not set"):
            connection_options(repository, partial)
    file_only = '[repository]\nurl = "swift://c/x"\nauth_url = "http://a"\nuser = "u"\nkey = "k"\n'
    assert load_settings(write(tmp_path, file_only), env={}).repository.key == "k"


def test_environment_override_errors_name_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path, '[repository]\nurl = "file:///r"\n')
    with pytest.raises(ConfigError, match="environment PITR_REPOSITORY_CONCURRENCY"):
        load_settings(path, env={"PITR_REPOSITORY_CONCURRENCY": "many"})


def test_instance_override_applies_to_the_selected_instance(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    settings = load_settings(path, env={"PITR_INSTANCE": "shop", "PITR_INSTANCE_PORT": "3307"})
    assert settings.instance("shop").port == 3307
    assert settings.instance("main").port == 5432


def test_instance_selection(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, GOOD), env={})
    with pytest.raises(ConfigError, match="several instances"):
        settings.instance(None)
    with pytest.raises(ConfigError, match="unknown instance 'nope'"):
        settings.instance("nope")


def test_secrets_are_hidden_from_repr(tmp_path: Path) -> None:
    text = GOOD.replace('region = "eu-west-1"', 'region = "eu-west-1"\nkey = "s3cr3t-value"')
    settings = load_settings(write(tmp_path, text), env={})
    assert "s3cr3t-value" not in repr(settings)
    assert settings.secrets() == ["s3cr3t-value"]


@pytest.mark.parametrize(
    ("url", "scheme", "container", "prefix"),
    [
        ("file:///var/lib/pitr/repo/", "file", "/var/lib/pitr/repo", ""),
        ("file://localhost/srv/r", "file", "/srv/r", ""),
        ("s3://bucket.name-1", "s3", "bucket.name-1", ""),
        ("s3://bucket/a/b/", "s3", "bucket", "a/b"),
        ("swift://backups/pitr%20prod", "swift", "backups", "pitr prod"),
    ],
)
def test_repository_urls(url: str, scheme: str, container: str, prefix: str) -> None:
    loc = parse_repository_url(url)
    assert (loc.scheme, loc.container, loc.prefix) == (scheme, container, prefix)
