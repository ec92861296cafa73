"""``pitr wal-push`` and ``pitr wal-fetch`` as PostgreSQL runs them, on real repositories.

The plain forms are answered before the command line is loaded (``pitr.entry``); the
``--json`` forms go through click. Both must archive the same way: same content pushed again
succeeds, different content is refused (exit 3) and never overwrites, a push interrupted
between its data object and its index document completes when run again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import zstandard
from servers import MotoServer

GENERATED = Path(__file__).parents[1] / "vectors" / "wal" / "generated"
SEGMENT = "000000010000000000000004"  # a real PostgreSQL 15 segment with commits
BINDIR = "/usr/lib/postgresql/15/bin"


class Repo:
    """A configuration for one fresh repository, and ``pitr`` run against it."""

    def __init__(self, tmp: Path, repository: str, env: dict[str, str]) -> None:
        self.tmp = tmp
        self.env = env
        self.config = tmp / "pitr.toml"
        self.config.write_text(
            f"[repository]\n{repository}\n"
            f'[instances.main]\nengine = "postgresql"\ndatadir = "{tmp}/data"\n'
            f'bindir = "{BINDIR}"\n'
        )

    def pitr(self, *args: str) -> subprocess.CompletedProcess[str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("PITR_", "AWS_"))}
        return subprocess.run(
            [sys.executable, "-m", "pitr", "--config", str(self.config), *args],
            env={**base, "HOME": str(self.tmp), **self.env},
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def logs_in_events(self) -> set[str]:
        done = self.pitr("events", "--json")
        assert done.returncode == 0, done.stderr
        return {e["log"] for e in json.loads(done.stdout)["events"]}


@pytest.fixture(params=["file", "s3"])
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> Repo:
    if request.param == "file":
        return Repo(tmp_path, f'url = "file://{tmp_path}/repo"', {})
    moto: MotoServer = request.getfixturevalue("moto_server")
    bucket = f"pitr-walpush-{os.urandom(4).hex()}"
    moto.create_bucket(bucket)
    return Repo(
        tmp_path,
        f'url = "s3://{bucket}/prod"\nendpoint_url = "{moto.endpoint_url}"\n'
        f'region = "{moto.region}"\naddressing = "path"',
        moto.env(),
    )


def segment(directory: Path, name: str = SEGMENT) -> Path:
    """The generated segment, decompressed under ``name`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    with (GENERATED / f"{SEGMENT}.zst").open("rb") as src, path.open("wb") as dst:
        zstandard.ZstdDecompressor().copy_stream(src, dst)
    return path


def flip_a_byte(path: Path, offset: int = 1 << 20) -> None:
    """Different content under the same name (past the header, so it is still a segment)."""
    with path.open("r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0xFF]))


def test_same_content_again_succeeds_different_content_is_refused(
    repo: Repo, tmp_path: Path
) -> None:
    wal = segment(tmp_path / "pg_wal")
    first = repo.pitr("wal-push", str(wal))  # the fast form
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"{SEGMENT} archived"
    again = repo.pitr("wal-push", "--json", str(wal))  # through the command line
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {"file": SEGMENT, "archived": False}

    flip_a_byte(wal)
    refused = repo.pitr("wal-push", str(wal))
    assert refused.returncode == 3, refused.stderr
    assert "already archived with different content" in refused.stderr
    assert refused.stderr.count("error: ") == 1

    fetched = tmp_path / "fetched"
    done = repo.pitr("wal-fetch", SEGMENT, str(fetched))
    assert done.returncode == 0, done.stderr
    original = segment(tmp_path / "original")
    assert fetched.read_bytes() == original.read_bytes()  # the first content, untouched


def test_a_push_interrupted_before_its_index_completes_when_run_again(
    repo: Repo, tmp_path: Path
) -> None:
    """The data object is written first, the index document last: a push killed in between
    leaves an object that the next push adopts (same content) instead of failing."""
    wal = segment(tmp_path / "pg_wal")
    assert repo.pitr("wal-push", str(wal)).returncode == 0
    index_key = f"main/logs/00000001/0000000100000000/{SEGMENT}.json"
    if repo.env:  # S3
        import boto3

        cfg = repo.config.read_text()
        bucket = cfg.split("s3://")[1].split("/")[0]
        endpoint = cfg.split('endpoint_url = "')[1].split('"')[0]
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **_creds(repo))
        s3.delete_object(Bucket=bucket, Key=f"prod/{index_key}")
    else:
        (tmp_path / "repo" / index_key).unlink()
    assert repo.logs_in_events() == set()  # the catalog no longer knows the segment

    done = repo.pitr("wal-push", str(wal))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{SEGMENT} archived"
    assert repo.logs_in_events() == {SEGMENT}


def _creds(repo: Repo) -> dict[str, str]:
    return {
        "aws_access_key_id": repo.env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": repo.env["AWS_SECRET_ACCESS_KEY"],
    }


def test_partial_and_backup_files_are_compared_too(repo: Repo, tmp_path: Path) -> None:
    partial = segment(tmp_path / "pg_wal", f"{SEGMENT}.partial")
    assert repo.pitr("wal-push", str(partial)).returncode == 0
    again = repo.pitr("wal-push", str(partial))
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"{SEGMENT}.partial was already archived"
    flip_a_byte(partial)
    refused = repo.pitr("wal-push", str(partial))
    assert refused.returncode == 3, refused.stderr
    assert "different content" in refused.stderr

    label = tmp_path / "pg_wal" / f"{SEGMENT}.00000028.backup"
    label.write_text("START WAL LOCATION: 0/4000028 (file 000000010000000000000004)\n")
    assert repo.pitr("wal-push", str(label)).returncode == 0
    assert repo.pitr("wal-push", str(label)).returncode == 0
    label.write_text("START WAL LOCATION: 0/4000060 (file 000000010000000000000004)\n")
    assert repo.pitr("wal-push", str(label)).returncode == 3


def test_fast_forms_answer_like_the_command_line(repo: Repo, tmp_path: Path) -> None:
    """Exit codes and messages of the plain forms are those of the full command line."""
    missing = repo.pitr("wal-fetch", "000000010000000000000009", str(tmp_path / "x"))
    assert missing.returncode == 1
    assert not (tmp_path / "x").exists()
    missing_json = repo.pitr("wal-fetch", "--json", "000000010000000000000009", str(tmp_path / "x"))
    assert missing_json.returncode == 1
    assert json.loads(missing_json.stdout)["found"] is False

    for args in (["wal-push", str(tmp_path / "nothing")], ["wal-push", "--json", "x/nothing"]):
        bad = repo.pitr(*args)
        assert bad.returncode == 2, bad.stderr
        assert "not a WAL segment" in bad.stderr
    wrong = repo.pitr("wal-push", "--instance", "other", str(segment(tmp_path / "w")))
    assert wrong.returncode == 2
    assert "other" in wrong.stderr


def test_plain_forms_never_load_the_command_line(repo: Repo, tmp_path: Path) -> None:
    """archive_command and restore_command run once per segment: no click, no rich, nothing of
    the encryption when the repository does not encrypt."""
    wal = segment(tmp_path / "pg_wal")
    dest = tmp_path / "fetched"
    code = (
        "from pitr.entry import _answer, _parse\n"  # (main() would leave the process)
        "codes = []\n"
        f"for argv in (['wal-push', {str(wal)!r}], ['wal-fetch', {SEGMENT!r}, {str(dest)!r}]):\n"
        f"    codes.append(_answer(_parse(['--config', {str(repo.config)!r}, *argv])))\n"
        "import sys\n"
        "heavy = ('click', 'rich', 'pitr.cli', 'pitr.crypt.keyring', 'cryptography')\n"
        "print(codes, [m for m in heavy if m in sys.modules])"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PITR_", "AWS_"))}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**base, **repo.env},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[0, 0] []"
    assert dest.read_bytes() == wal.read_bytes()


@pytest.mark.parametrize("thread", [False, True], ids=["alone", "a-thread-still-runs"])
def test_fast_forms_leave_with_their_output_and_code(tmp_path: Path, thread: bool) -> None:
    """The fast forms skip the interpreter's teardown (``entry._leave``): what they wrote is out
    and the exit code is theirs; a thread still running gets the ordinary exit, which waits."""
    marker = tmp_path / "thread-done"
    late = f"(time.sleep(0.3), open({str(marker)!r}, 'w').close())"
    code = (
        "import sys, threading, time\nfrom pitr.entry import _leave\n"
        + (f"threading.Thread(target=lambda: {late}).start()\n" if thread else "")
        + "print('archived', end='')\nsys.stderr.write('warning')\n_leave(3)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert (done.returncode, done.stdout, done.stderr) == (3, "archived", "warning")
    assert marker.exists() == thread
