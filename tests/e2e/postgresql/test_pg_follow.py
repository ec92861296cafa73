"""``pitr archive --follow`` on PostgreSQL (docs/postgresql.md, "Streaming WAL"), one story on
every version: a follower streaming through its replication slot, killed (SIGKILL) and started
again without a segment lost or published twice; the slot and its lag in ``check``,
``status`` and the Prometheus metrics; then the primary stopped with ``-m immediate`` and a
target a second before the stop, inside the streamed partial segment, restored beside.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path
from subprocess import Popen

from clirun import wait_for
from pg_e2e import Site, mark, markers

FOLLOW_INTERVAL = 1


def slot_active(site: Site) -> bool:
    rows = site.sql("SELECT active FROM pg_replication_slots WHERE slot_name = 'pitr_main'")
    return bool(rows and rows[0][0])


def start_follower(site: Site) -> subprocess.Popen[str]:
    follower = site.popen("archive", "--follow")
    wait_for(lambda: slot_active(site) or follower.poll() is not None, 60, "the slot in use")
    assert follower.poll() is None, follower.communicate()
    return follower


def stop_follower(follower: subprocess.Popen[str]) -> dict[str, object]:
    follower.send_signal(signal.SIGTERM)
    out, err = follower.communicate(timeout=120)
    assert follower.returncode == 0, err
    return {"stderr": err, "stdout": out}


def some_wal(site: Site, rounds: int) -> list[str]:
    """``rounds`` segments, each ended by a WAL switch; their names."""
    names = []
    for n in range(rounds):
        site.sql("INSERT INTO filler SELECT g, md5(g::text) FROM generate_series(1, 2000) g")
        mark(site, f"w{time.monotonic_ns()}-{n}")
        names.append(str(site.one("SELECT pg_walfile_name(pg_switch_wal() - 1)")))
    return names


def archived_segments(repo: Path) -> list[str]:
    """Every WAL segment the repository publishes (index documents under logs/)."""
    docs = repo.glob("*/logs/00000001/*/*.json")
    return sorted(p.stem for p in docs if re.fullmatch(r"[0-9A-F]{24}", p.stem))


def data_objects(repo: Path, name: str) -> list[Path]:
    found = repo.glob(f"*/logs/00000001/*/{name}*")
    return [p for p in found if re.fullmatch(rf"{name}(\.[a-z]+)?", p.name) and p.suffix != ".json"]


def open_documents(repo: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in repo.rglob("open/00000001/*.json")]


def killed_and_restarted(site: Site, repo: Path, follower: subprocess.Popen[str]) -> Popen[str]:
    """Only the follower ships WAL; it is killed mid-stream and started again: every
    segment from the backup on is published once, with one data object."""
    site.sql("ALTER SYSTEM SET archive_command = '/bin/true'")
    site.sql("SELECT pg_reload_conf()")
    first = some_wal(site, 3)
    mark(site, "streamed")  # the partial segment is shipped every follow_interval
    wait_for(lambda: any(d.get("commits") for d in open_documents(repo)), 30,
             "the partial segment shipped")  # fmt: skip
    follower.send_signal(signal.SIGKILL)
    follower.wait()
    while_down = some_wal(site, 2)  # waits in the slot
    follower = start_follower(site)
    after = some_wal(site, 2)
    try:
        wait_for(lambda: after[-1] in archived_segments(repo), 60, f"{after[-1]} archived")
    except AssertionError:
        follower.terminate()
        raise AssertionError(str(follower.communicate()) + str(archived_segments(repo))) from None
    names = archived_segments(repo)
    assert set(first + while_down + after) <= set(names)
    numbers = [int(n[8:], 16) for n in names]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), names
    for name in names:
        assert len(data_objects(repo, name)) == 1, name
    site.sql("ALTER SYSTEM RESET archive_command")  # both paths from here on
    site.sql("SELECT pg_reload_conf()")
    both = site.archive_now()  # archive_command fails should the follower's copy differ
    wait_for(lambda: both in archived_segments(repo), 60, f"{both} archived")
    assert len(data_objects(repo, both)) == 1
    return follower


def slot_shown(site: Site) -> None:
    """``check``, ``status`` and the metrics show the slot and the WAL it holds."""
    checked = site.run("check")
    assert re.search(r"replication slot.*pitr_main: active", checked.stdout), checked
    health = site.run("status", "--json")
    slot = [c for c in health.json()["checks"] if c["name"] == "slot"]
    assert slot and slot[0]["status"] == "OK", health
    assert re.search(r"pitr_main \(active\): holds \d", slot[0]["detail"]), slot
    metrics = site.run("status", "--format", "prometheus").stdout
    labels = '{pitr_instance="main",slot="pitr_main"}'
    assert re.search(re.escape(f"pitr_slot_retained_bytes{labels}") + r" \d+\n", metrics)
    assert f"pitr_slot_active{labels} 1\n" in metrics


def partial_counted(site: Site, target: datetime, streamed: set[str]) -> None:
    """``list``, ``status`` and the metrics count the streamed partial segment as ``plan``
    does: the window reaches the target inside it, the archive lag is that of its shipment."""
    listing = site.ok("list")
    logs = [log for log in listing["logs"] if log["stream"] == "00000001"]
    assert logs and logs[0]["open"] in streamed and logs[0]["last"] == logs[0]["open"], listing
    assert "(open)" in site.run("list").stdout
    latest = datetime.fromisoformat(listing["window"]["latest"])
    assert latest > target, listing
    health = site.run("status", "--json").json()
    assert health["window"]["latest"] == listing["window"]["latest"], health
    archive = next(c for c in health["checks"] if c["name"] == "archive")
    assert archive["age_seconds"] < 120, archive
    metrics = site.run("status", "--format", "prometheus").stdout
    end = re.search(r"^pitr_recovery_window_end_timestamp_seconds\S* (\S+)$", metrics, re.M)
    assert end and float(end.group(1)) == latest.timestamp(), metrics


def test_follow_story(site: Site, pg_major: int) -> None:
    assert site.repo_dir is not None
    with site.config.open("a") as fh:  # the instance's table is the file's last
        fh.write(f"follow_interval = {FOLLOW_INTERVAL}\n")
    site.sql("CREATE TABLE markers (name text PRIMARY KEY, at timestamptz DEFAULT now())")
    site.sql("CREATE TABLE filler (id int, v text)")
    site.backup("full")
    follower = killed_and_restarted(site, site.repo_dir, start_follower(site))
    slot_shown(site)

    # the primary is lost a second after B; C comes after the target
    mark(site, "A")
    mark(site, "B")
    time.sleep(0.5)
    target = site.one("SELECT clock_timestamp()")
    time.sleep(0.5)
    mark(site, "C")
    site.server.stop(mode="immediate")
    stop_follower(follower)

    assert site.ok("plan", "--latest")["plan"]["recoverable"]
    plan = site.ok("plan", "--at", target.isoformat())["plan"]
    assert plan["recoverable"], plan
    streamed = {str(d["name"]) for d in open_documents(site.repo_dir)}
    assert plan["steps"][-1]["logs"][-1] in streamed, plan  # the target is in the partial
    partial_counted(site, target, streamed)
    with site.restore("--at", target.isoformat()) as (_doc, cluster):
        found = markers(cluster)
        assert {"A", "B", "streamed"} <= found
        assert "C" not in found
