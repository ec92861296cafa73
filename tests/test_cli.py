"""The command line as scripts and cron see it: exit codes, one-line errors, JSON, secrets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from servers import MotoServer, SwiftServer
from servers.common import free_port

import pitr
from pitr.storage.local import LocalStorage

SECRET = "S3cr3t-Do-Not-Leak-4711"


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``pitr ARGS`` in a subprocess with a clean PITR_* / AWS_* / ST_* environment."""
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("PITR_", "AWS_", "ST_", "OS_"))
    }
    return subprocess.run(
        [sys.executable, "-m", "pitr", *args],
        cwd=cwd,
        env={**base, "HOME": str(cwd), **(env or {})},
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def write_config(directory: Path, repository: str, instances: str = "") -> Path:
    path = directory / "pitr.toml"
    path.write_text(f"[repository]\n{repository}\n{instances}")
    return path


def test_version(tmp_path: Path) -> None:
    done = run("--version", cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout.strip() == f"pitr {pitr.__version__}"


def test_start_up_imports_no_heavy_sdk(tmp_path: Path) -> None:
    heavy = ["boto3", "botocore", "swiftclient", "psycopg", "pymysql", "rich", "zstandard"]
    for argv in (["--version"], ["--help"], ["check", "--help"]):
        code = (
            "import sys\nfrom pitr.cli.main import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            f"print(sorted(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True
        )
        assert done.stderr.strip().splitlines()[-1] == "[]", (argv, done.stderr)


def test_no_configuration_is_a_usage_error(tmp_path: Path) -> None:
    done = run("check", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("error: no configuration file found")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("config", "code", "fragment"),
    [
        ('url = "file:///tmp/x"\nbogus = 1', 2, "[repository] unknown key(s): bogus"),
        ('url = "gopher://x"', 2, "unknown scheme 'gopher'"),
        ('url = "s3:///nobucket"', 2, "bucket name is empty"),
    ],
)
def test_bad_config_one_line_and_exit_code(
    tmp_path: Path, config: str, code: int, fragment: str
) -> None:
    write_config(tmp_path, config)
    done = run("check", cwd=tmp_path)
    assert done.returncode == code
    lines = done.stderr.strip().splitlines()
    assert fragment in lines[0]
    assert all(line.startswith(("error:", "HINT:")) for line in lines)
    assert done.stdout == ""


def test_unknown_option_is_one_line(tmp_path: Path) -> None:
    done = run("check", "--frobnicate", cwd=tmp_path)
    assert done.returncode == 2
    first = done.stderr.splitlines()[0]
    assert first.startswith("error: No such option") and "--frobnicate" in first


def test_swift_without_credentials_is_a_configuration_error(tmp_path: Path) -> None:
    config = write_config(tmp_path, 'url = "swift://pitr-nocreds/prod"\nuser = "a:u"')
    done = run("--config", str(config), "list", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"error: {config}: [repository] auth_url, key: not set for a swift:// repository",
        "HINT: set them in the file or through ST_AUTH/ST_USER/ST_KEY "
        "(or OS_AUTH_URL/OS_USERNAME/OS_PASSWORD)",
    ]
    assert done.stdout == ""


def test_expire_without_a_policy_changes_nothing(tmp_path: Path) -> None:
    """Bad input: exit 2 before the lock is taken: no lock file, no repository directory."""
    repo, locks = tmp_path / "repo", tmp_path / "locks"
    write_config(tmp_path, f'url = "file://{repo}"', '[instances.main]\nengine = "postgresql"')
    for dry_run in ([], ["--dry-run"]):
        done = run("expire", *dry_run, cwd=tmp_path, env={"PITR_LOCK_DIR": str(locks)})
        assert done.returncode == 2
        assert done.stderr.splitlines() == [
            "error: no retention policy is configured: nothing would ever expire",
            "HINT: set [retention] full = N and/or days = D in pitr.toml",
        ]
    assert not repo.exists() and not locks.exists()


@pytest.mark.parametrize(
    ("stale_hours", "hint"),
    [
        ("1", "HINT: held for 2.0 h; if host db2 is gone, remove the lock object "),
        ("3", "HINT: wait for it to finish, or pass --lock-wait SECONDS"),
    ],
)
def test_a_lock_from_another_host_is_stale_after_the_configured_age(
    tmp_path: Path, stale_hours: str, hint: str
) -> None:
    repo = LocalStorage(str(tmp_path / "repo"))
    key = "main/locks/instance.json"
    acquired = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    doc = {"format": "1.0", "kind": "lock", "host": "db2", "pid": 4242, "command": "backup"}
    repo.put_bytes(key, json.dumps(doc | {"acquired": acquired, "token": "0" * 32}).encode())
    write_config(
        tmp_path,
        f'url = "file://{repo.root}"',
        '[retention]\nfull = 1\n[locks]\nstale_hours = 6\n[instances.main]\nengine = "mysql"',
    )
    env = {"PITR_LOCKS_STALE_HOURS": stale_hours, "PITR_LOCK_DIR": str(tmp_path / "locks")}
    done = run("expire", cwd=tmp_path, env=env)
    assert done.returncode == 75
    error, given = done.stderr.splitlines()
    assert error.startswith("error: instance 'main' is locked by 'backup' (pid 4242 on db2)")
    assert given.startswith(hint)
    assert json.loads(repo.get_bytes(key))["host"] == "db2"  # never broken automatically


def test_check_file_repository_json(tmp_path: Path) -> None:
    write_config(tmp_path, f'url = "file://{tmp_path}/repo"')
    done = run("check", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # nothing but JSON on stdout
    assert report["ok"] is True
    names = [c["name"] for c in report["checks"]]
    assert names[0] == "config"
    assert [n for n in names if n.startswith("repository")] == [
        "repository open",
        "repository write",
        "repository list",
        "repository read",
        "repository delete",
    ]
    assert all(c["ms"] is not None for c in report["checks"] if c["name"].startswith("repo"))
    assert not list((tmp_path / "repo").rglob("*probe*"))
    assert [p for p in (tmp_path / "repo").rglob("*") if p.is_file()] == []


def test_check_reports_an_unreachable_instance(tmp_path: Path) -> None:
    write_config(
        tmp_path,
        f'url = "file://{tmp_path}/repo"',
        f'[instances.main]\nengine = "mariadb"\nhost = "127.0.0.1"\nport = {free_port()}',
    )
    done = run("check", "--json", cwd=tmp_path)
    assert done.returncode == 6, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is False
    failed = [c for c in report["checks"] if not c["ok"]]
    assert len(failed) == 1 and failed[0]["name"].startswith("instance main")
    assert report["error"]["exit_code"] == 6


def test_check_text_output_is_a_table(tmp_path: Path) -> None:
    write_config(tmp_path, f'url = "file://{tmp_path}/repo"')
    done = run("check", cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout.splitlines()[0].split() == ["check", "result", "ms", "detail"]
    assert "repository read" in done.stdout


def test_check_s3(tmp_path: Path, moto_server: MotoServer) -> None:
    moto_server.create_bucket("pitr-cli-check")
    write_config(
        tmp_path,
        f'url = "s3://pitr-cli-check/prod"\nendpoint_url = "{moto_server.endpoint_url}"\n'
        'addressing = "path"\nregion = "us-east-1"',
    )
    done = run("check", "--json", cwd=tmp_path, env=moto_server.env())
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] is True


def test_check_swift_from_st_environment(tmp_path: Path, swift_server: SwiftServer) -> None:
    write_config(tmp_path, 'url = "swift://pitr-cli-check/prod"')
    done = run("check", "--json", cwd=tmp_path, env=swift_server.env())
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] is True


def test_check_dead_endpoint_exits_5_within_budget(tmp_path: Path) -> None:
    write_config(
        tmp_path,
        f'url = "s3://pitr-dead/x"\nendpoint_url = "http://127.0.0.1:{free_port()}"\ntimeout = 8',
    )
    started = time.monotonic()
    done = run(
        "check",
        "--json",
        cwd=tmp_path,
        env={"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"},
    )
    # One budget (8 s), not a second one spent deleting a probe never written: a second would
    # take 16 s; the 7 s between leave room for start-up on a loaded machine (boto3's import).
    assert time.monotonic() - started < 15
    assert done.returncode == 5
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "gave up after 8 s" in errors[0]
    payload = json.loads(done.stdout)
    assert payload["error"]["exit_code"] == 5
    steps = [(c["name"], c["ok"]) for c in payload["checks"]]
    assert steps[-1] == ("repository write", False), steps


def test_debug_shows_traceback(tmp_path: Path) -> None:
    write_config(tmp_path, 'url = "file:///proc/pitr-cannot-write-here"')
    plain = run("check", cwd=tmp_path)
    debug = run("--debug", "check", cwd=tmp_path)
    assert plain.returncode == debug.returncode != 0
    assert "Traceback" not in plain.stderr
    assert "Traceback" in debug.stderr


def test_secret_never_in_logs_or_process_arguments(
    tmp_path: Path, swift_server: SwiftServer
) -> None:
    """A Swift key in the config: absent from output, debug logs and every `ps` line."""
    write_config(
        tmp_path,
        f'url = "swift://pitr-secret/x"\nauth_url = "{swift_server.auth_url}"\n'
        f'user = "{swift_server.user}"\nkey = "{SECRET}"\ntimeout = 3',
    )
    seen: list[str] = []
    stop = threading.Event()

    def sample_ps() -> None:
        while not stop.is_set():
            seen.append(
                subprocess.run(
                    ["ps", "-eo", "args"], capture_output=True, text=True, check=True
                ).stdout
            )
            time.sleep(0.05)

    sampler = threading.Thread(target=sample_ps)
    sampler.start()
    try:
        done = run("--debug", "check", "--json", cwd=tmp_path)
    finally:
        stop.set()
        sampler.join()
    assert done.returncode == 5  # the key is wrong: access denied
    assert "access denied" in done.stderr
    # the sampler saw pitr itself running, so its arguments were really looked at
    assert any("pitr --debug check" in text for text in seen)
    for text in [done.stdout, done.stderr, *seen]:
        assert SECRET not in text


def test_async_wal_push_answers_without_loading_the_command_line(tmp_path: Path) -> None:
    """archive_command 'pitr wal-push --async %p' once the worker has archived the segment:
    answered from the status file, without click or any storage SDK."""
    spool = tmp_path / "spool"
    write_config(
        tmp_path, f'url = "file://{tmp_path}/repo"', '[instances.main]\nengine = "postgresql"'
    )
    (tmp_path / "pitr.toml").write_text(
        f'spool_dir = "{spool}"\n' + (tmp_path / "pitr.toml").read_text()
    )
    status = spool / "main" / "archive"
    status.mkdir(parents=True)
    (status / "000000010000000000000007.ok").touch()
    code = (
        "import sys\nfrom pitr.entry import _answer, _parse\n"  # (main() would leave)
        f"rc = _answer(_parse(['--config', {str(tmp_path / 'pitr.toml')!r}, 'wal-push', "
        "'--async', 'pg_wal/000000010000000000000007']))\n"
        "heavy = [m for m in ('click', 'boto3', 'swiftclient', 'psycopg', 'zstandard') "
        "if m in sys.modules]\n"
        "print(rc, heavy)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True
    )
    assert done.stdout.splitlines()[-1] == "0 []"
    assert not (status / "000000010000000000000007.ok").exists()  # acknowledged once


def test_json_error_document_for_options_refused_while_parsing(tmp_path: Path) -> None:
    """An option click refuses before it has seen --json still answers in JSON."""
    write_config(
        tmp_path, f'url = "file://{tmp_path}/repo"', '[instances.main]\nengine = "postgresql"'
    )
    done = run("plan", "--json", "--bogus", cwd=tmp_path)
    assert done.returncode == 2
    error = json.loads(done.stdout)["error"]
    assert error["exit_code"] == 2 and "--bogus" in error["message"]
    assert done.stderr.startswith("error: ")
    plain = run("plan", "--bogus", cwd=tmp_path)
    assert plain.returncode == 2 and plain.stdout == ""
    assert not (tmp_path / "repo").exists()
