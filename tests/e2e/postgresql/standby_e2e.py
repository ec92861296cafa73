"""A primary and its streaming standby for the standby stories (docs/postgresql.md, "Backups from
a standby"): the primary does not archive at all; the standby archives every segment it
receives (``archive_mode = always``, ``pitr wal-push``) and pitr's instance is the standby,
naming its primary (``primary_host``/``primary_port``/``primary_user``)."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clirun import INSTANCE, PITR, wait_for
from pg_e2e import Site, cli_env, public_dir
from servers import PostgresServer
from servers.common import remove_dir
from servers.pgstandby import replay_caught_up, start_standby


@dataclass
class Pair:
    """``site`` runs pitr against the standby; its SQL (``site.sql``) goes to the primary."""

    primary: PostgresServer
    standby: PostgresServer
    site: Site

    def caught_up(self) -> None:
        replay_caught_up(self.primary, self.standby)

    def archive_now(self, timeout: float = 60) -> str:
        """A WAL switch on the primary; waits until the standby archived the segment."""
        name = str(self.primary.sql("SELECT pg_walfile_name(pg_switch_wal() - 1)")[0][0])

        def archived() -> bool:
            last, failed = self.standby.sql(
                "SELECT last_archived_wal, last_failed_wal FROM pg_stat_archiver"
            )[0]
            assert failed is None, f"archive_command failed: {self.standby.log_tail()}"
            return last is not None and str(last) >= name

        wait_for(archived, timeout, f"the standby to archive {name}")
        return name

    def checkpoint(self) -> None:
        """A checkpoint on the primary, replayed: the standby's next restartpoint (where its
        next backup starts) lies in WAL it received and archived itself."""
        self.primary.sql("CHECKPOINT")
        self.caught_up()

    def variant(self, name: str, *, primary_port: int | None = 0, extra: str = "") -> str:
        """Another configuration of the same standby and repository: ``primary_port`` None
        leaves the primary out, another port names an unreachable one; ``extra`` lines go
        into the instance's table. Its path."""
        path = self.site.base / name
        port = self.primary.port if primary_port == 0 else primary_port
        write_config(path, repo_url(self.site), self.standby, port, extra)
        return str(path)

    def popen(self, *args: str, config: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(PITR), "--config", config, *args],
            cwd=self.site.base, env=self.site.env, text=True, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, umask=0,
        )  # fmt: skip


def repo_url(site: Site) -> str:
    assert site.repo_dir is not None
    return f"file://{site.repo_dir}"


def write_config(
    path: Path, url: str, standby: PostgresServer, primary_port: int | None, extra: str = ""
) -> None:
    primary = (
        f'primary_host = "127.0.0.1"\nprimary_port = {primary_port}\nprimary_user = "postgres"\n'
        if primary_port is not None
        else ""
    )
    path.write_text(
        f'spool_dir = "{path.parent / "spool"}"\n\n[repository]\nurl = "{url}"\n\n'
        f'[instances.{INSTANCE}]\nengine = "postgresql"\ndatadir = "{standby.datadir}"\n'
        f'host = "127.0.0.1"\nport = {standby.port}\nuser = "postgres"\n'
        f'bindir = "{standby.bindir}"\n{primary}{extra}'
    )
    path.chmod(0o644)


def make_pair(major: int, primary: PostgresServer | None = None) -> Pair:
    """A standby archiving into a new file repository; of ``primary`` when given (it stays
    the caller's), else of a new primary that does not archive."""
    base = public_dir("pitr-standby-")
    repo = base / "repo"
    repo.mkdir(mode=0o777)
    repo.chmod(0o777)
    if primary is None:
        primary = PostgresServer(gucs={"archive_mode": "off"}, major=major)
        primary.init()
        primary.start()
    config = base / "pitr.toml"
    archive = f"{PITR} --config {config} wal-push %p"
    port = primary.port

    def prepare(standby: PostgresServer) -> None:
        write_config(config, f"file://{repo}", standby, port)

    standby = start_standby(primary, archive, prepare=prepare)
    site = Site(primary, base, config, cli_env(None, base), repo)
    pair = Pair(primary, standby, site)
    pair.checkpoint()
    return pair


@contextlib.contextmanager
def standby_pair(major: int) -> Iterator[Pair]:
    pair = make_pair(major)
    try:
        yield pair
    finally:
        destroy_pair(pair, primary=True)


def destroy_pair(pair: Pair, *, primary: bool) -> None:
    try:
        pair.standby.destroy()
        if primary:
            pair.primary.destroy()
    finally:
        remove_dir(pair.site.base)


def manifests(site: Site) -> list[dict[str, Any]]:
    assert site.repo_dir is not None
    return [json.loads(p.read_text()) for p in sorted(site.repo_dir.rglob("manifest.json"))]


def backup_dirs(site: Site) -> list[str]:
    """Every backup directory in the repository, complete or not."""
    assert site.repo_dir is not None
    return sorted(p.name for p in site.repo_dir.glob(f"{INSTANCE}/backups/*") if p.is_dir())
