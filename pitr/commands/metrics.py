"""``pitr status --format prometheus`` and the ``[status] textfile``: an instance's health as
metrics in the Prometheus text exposition format (docs/monitoring.md lists every one).

Every metric is a gauge labelled ``pitr_instance`` (not ``instance``, which Prometheus sets to
the scraped target). Times are Unix seconds (``_timestamp_seconds``), durations seconds, sizes
bytes. What the repository holds is read from the catalog; what the last runs did and how a
follower keeps up comes from the local state files (``storage.runstate``). A repository that cannot
be read gives ``pitr_repository_up 0`` and the local metrics, never a missing file.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import get_args

from pitr.catalog import Catalog
from pitr.catalog.model import BackupType
from pitr.catalog.store import open_catalog
from pitr.commands.status import STATES, health, newest_log_time, slot_check, slot_lag, worst
from pitr.config.settings import InstanceSettings, Settings
from pitr.domain.timeutil import from_microseconds
from pitr.errors import PitrError, PreconditionFailed
from pitr.planner import window, windows_of
from pitr.storage.runstate import RECORDED, read_follow, read_run, replace_file

log = logging.getLogger("pitr.metrics")

#: a follower whose heartbeat is older than this is reported down
FOLLOW_STALE_SECONDS = 60.0

#: every metric, in output order, with its help text
HELP = {
    "pitr_instance_info": "An instance pitr protects (engine in a label); always 1.",
    "pitr_status": "Health as pitr status grades it: 0 OK, 1 WARN, 2 CRIT.",
    "pitr_repository_up": "1 when the repository's catalog could be read, else 0.",
    "pitr_backups": "Complete backups in the repository, by type.",
    "pitr_last_backup_info": "The newest backup (id and type in labels); always 1.",
    "pitr_last_backup_start_timestamp_seconds": "Start of the newest backup of each type.",
    "pitr_last_backup_end_timestamp_seconds": "Consistent point of the newest backup of each type.",
    "pitr_last_backup_duration_seconds": "How long the newest backup of each type took.",
    "pitr_last_backup_size_bytes": "Bytes the newest backup of each type stores (compressed).",
    "pitr_last_backup_data_size_bytes": "Bytes of data the newest backup of each type holds "
    "(before compression).",
    "pitr_last_archived_log_timestamp_seconds": "When the newest log was archived (or its "
    "last commit, if later).",
    "pitr_archive_lag_seconds": "Seconds from the newest archived log to when these metrics "
    "were made.",
    "pitr_archived_logs": "Logs (WAL segments, binlogs) in the repository, by stream.",
    "pitr_archived_logs_size_bytes": "Bytes the archived logs of each stream store.",
    "pitr_last_commit_timestamp_seconds": "Newest commit in the archived logs, by stream.",
    "pitr_recovery_window_start_timestamp_seconds": "Earliest recoverable time (oldest usable "
    "backup).",
    "pitr_recovery_window_end_timestamp_seconds": "Latest recoverable time (last commit "
    "archived contiguously).",
    "pitr_recovery_window_seconds": "Length of the recoverable window.",
    "pitr_scoped_recovery_window_start_timestamp_seconds": "Earliest recoverable time per "
    "PostgreSQL timeline, MariaDB GTID domain or MySQL GTID source.",
    "pitr_scoped_recovery_window_end_timestamp_seconds": "Latest recoverable time per "
    "PostgreSQL timeline, MariaDB GTID domain or MySQL GTID source.",
    "pitr_retention_window_seconds": "The window [retention] days asks to keep.",
    "pitr_last_run_success": "1 when the last run of the command succeeded, else 0.",
    "pitr_last_run_exit_code": "Exit code of the last run of the command.",
    "pitr_last_run_end_timestamp_seconds": "When the last run of the command ended.",
    "pitr_last_run_duration_seconds": "How long the last run of the command took.",
    "pitr_last_run_success_timestamp_seconds": "When the last successful run of the command ended.",
    "pitr_follow_up": "1 while a binlog follower (archive --follow) sends heartbeats, else 0.",
    "pitr_follow_heartbeat_timestamp_seconds": "The follower's last heartbeat.",
    "pitr_follow_lag_seconds": "At the last heartbeat: seconds since the follower last held "
    "everything the server had written (0 when level).",
    "pitr_follow_behind_bytes": "At the last heartbeat: bytes of the server's open binlog (or "
    "WAL) the follower had not copied yet.",
    "pitr_slot_active": "1 while a receiver streams from the PostgreSQL replication slot of "
    "archive --follow, else 0.",
    "pitr_slot_retained_bytes": "WAL the replication slot of archive --follow holds on the "
    "server (from its restart LSN to the current position).",
}


@dataclass(frozen=True)
class Sample:
    name: str
    labels: tuple[tuple[str, str], ...]
    value: float


@dataclass
class InstanceMetrics:
    """One instance's samples, and the status grade they carry."""

    instance: str
    state: str = "OK"
    samples: list[Sample] = field(default_factory=list)

    def add(self, name: str, value: float | None, **labels: str) -> None:
        if name not in HELP:
            raise KeyError(name)  # every metric is documented in HELP
        if value is not None:
            pairs = (("pitr_instance", self.instance), *sorted(labels.items()))
            self.samples.append(Sample(name, pairs, float(value)))

    def at(self, name: str, moment: datetime | None, **labels: str) -> None:
        self.add(name, None if moment is None else moment.timestamp(), **labels)


def collect(settings: Settings, inst: InstanceSettings, now: datetime) -> InstanceMetrics:
    """Every metric of one instance, as of ``now``."""
    found = InstanceMetrics(inst.name)
    found.add("pitr_instance_info", 1, engine=inst.engine)
    try:
        catalog = open_catalog(settings, inst).load_current()  # as status and plan count
    except PitrError as exc:
        log.warning("instance %s: cannot read the catalog: %s", inst.name, exc.message)
        found.state = "CRIT"
        found.add("pitr_repository_up", 0)
    else:
        found.add("pitr_repository_up", 1)
        found.state = worst(health(catalog, settings.status, now))
        _backups(found, catalog)
        _archive(found, catalog, now)
        _windows(found, catalog)
    _slot(found, settings, inst)
    found.add("pitr_status", STATES.index(found.state))
    days = settings.retention.days
    found.add("pitr_retention_window_seconds", None if days is None else days * 86400)
    _runs(found, settings.lock_dir)
    _follower(found, settings.lock_dir, now)
    return found


def _backups(found: InstanceMetrics, catalog: Catalog) -> None:
    for kind in get_args(BackupType):
        of_kind = [b for b in catalog.backups if b.type == kind]
        found.add("pitr_backups", len(of_kind), type=kind)
        if not of_kind:
            continue
        newest = max(of_kind, key=lambda b: b.end_time)
        found.at("pitr_last_backup_start_timestamp_seconds", newest.start_time, type=kind)
        found.at("pitr_last_backup_end_timestamp_seconds", newest.end_time, type=kind)
        took = (newest.end_time - newest.start_time).total_seconds()
        found.add("pitr_last_backup_duration_seconds", max(0.0, took), type=kind)
        found.add("pitr_last_backup_size_bytes", newest.bytes, type=kind)
        found.add("pitr_last_backup_data_size_bytes", newest.raw_bytes, type=kind)
    if catalog.backups:
        newest = max(catalog.backups, key=lambda b: b.end_time)
        found.add("pitr_last_backup_info", 1, backup_id=newest.id, type=newest.type)


def _archive(found: InstanceMetrics, catalog: Catalog, now: datetime) -> None:
    last = newest_log_time(catalog)
    found.at("pitr_last_archived_log_timestamp_seconds", last)
    if last is not None:
        found.add("pitr_archive_lag_seconds", max(0.0, (now - last).total_seconds()))
    for stream, run in sorted(catalog.streams.items()):
        if not len(run):
            continue
        found.add("pitr_archived_logs", len(run), stream=stream)
        found.add("pitr_archived_logs_size_bytes", sum(run.column("object_size")), stream=stream)
        highs = [v for v in run.column("max_commit") if v is not None]
        last_commit = from_microseconds(max(highs)) if highs else None
        found.at("pitr_last_commit_timestamp_seconds", last_commit, stream=stream)


def _windows(found: InstanceMetrics, catalog: Catalog) -> None:
    whole = window(catalog)
    found.at("pitr_recovery_window_start_timestamp_seconds", whole.earliest)
    found.at("pitr_recovery_window_end_timestamp_seconds", whole.latest)
    if whole.earliest is not None and whole.latest is not None:
        length = (whole.latest - whole.earliest).total_seconds()
        found.add("pitr_recovery_window_seconds", max(0.0, length))
    for part in windows_of(catalog):
        labels = {"scope": part.scope, "scope_id": str(part.id)}
        start, end = part.window.earliest, part.window.latest
        found.at("pitr_scoped_recovery_window_start_timestamp_seconds", start, **labels)
        found.at("pitr_scoped_recovery_window_end_timestamp_seconds", end, **labels)


def _slot(found: InstanceMetrics, settings: Settings, inst: InstanceSettings) -> None:
    lag = slot_lag(settings, inst)
    if lag is None:
        return
    found.state = max(found.state, slot_check(lag, settings.status).state, key=STATES.index)
    found.add("pitr_slot_active", int(lag.active), slot=lag.name)
    found.add("pitr_slot_retained_bytes", lag.retained_bytes, slot=lag.name)


def _runs(found: InstanceMetrics, lock_dir: str) -> None:
    for command in RECORDED:
        record = read_run(lock_dir, found.instance, command)
        if record is None:
            continue
        took = max(0.0, (record.finished - record.started).total_seconds())
        found.add("pitr_last_run_success", int(record.succeeded), command=command)
        found.add("pitr_last_run_exit_code", record.exit_code, command=command)
        found.at("pitr_last_run_end_timestamp_seconds", record.finished, command=command)
        found.add("pitr_last_run_duration_seconds", took, command=command)
        last_success = record.last_success
        found.at("pitr_last_run_success_timestamp_seconds", last_success, command=command)


def _follower(found: InstanceMetrics, lock_dir: str, now: datetime) -> None:
    doc = read_follow(lock_dir, found.instance)
    if doc is None or doc.get("heartbeat") is None:
        return
    beat: datetime = doc["heartbeat"]
    fresh = doc.get("stopped") is None and (now - beat).total_seconds() <= FOLLOW_STALE_SECONDS
    found.add("pitr_follow_up", int(fresh))
    found.at("pitr_follow_heartbeat_timestamp_seconds", beat)
    level = doc.get("caught_up") or doc.get("started")
    if level is not None:
        found.add("pitr_follow_lag_seconds", max(0.0, (beat - level).total_seconds()))
    behind = doc.get("behind_bytes")
    found.add("pitr_follow_behind_bytes", behind if isinstance(behind, int) else None)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isfinite(value) and value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def render(reports: Iterable[InstanceMetrics]) -> str:
    """The text exposition format: each family once (HELP, TYPE, its samples)."""
    by_name: dict[str, list[Sample]] = {}
    for report in reports:
        for sample in report.samples:
            by_name.setdefault(sample.name, []).append(sample)
    lines: list[str] = []
    for name, text in HELP.items():
        if name not in by_name:
            continue
        lines += [f"# HELP {name} {text}", f"# TYPE {name} gauge"]
        for sample in by_name[name]:
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sample.labels)
            lines.append(f"{name}{{{labels}}} {_number(sample.value)}")
    return "\n".join(lines) + "\n"


def textfile_targets(settings: Settings, names: Sequence[str]) -> list[tuple[Path, list[str]]]:
    """Where ``[status] textfile`` wants which instances: a path with ``{instance}`` gets one
    file per instance (those in ``names``); any other path one file with every instance."""
    path = settings.status.textfile
    if not path:
        return []
    if "{instance}" in path:
        return [(Path(path.replace("{instance}", name)), [name]) for name in names]
    return [(Path(path), sorted(settings.instances))]


def write_textfiles(
    settings: Settings,
    names: Sequence[str],
    now: datetime,
    known: dict[str, InstanceMetrics] | None = None,
) -> None:
    """Refresh the ``[status] textfile`` file(s) covering ``names`` (atomically: node_exporter
    reads either the old file or the new). Metrics in ``known`` are reused."""
    cache = dict(known or {})
    for path, covered in textfile_targets(settings, names):
        for name in covered:
            if name not in cache:
                cache[name] = collect(settings, settings.instances[name], now)
        try:
            replace_file(path, render(cache[name] for name in covered))
        except OSError as exc:
            raise PreconditionFailed(
                f"cannot write the metrics file {path}: {exc.strerror}",
                hint="[status] textfile must be in a directory this OS user can write",
            ) from None


def prometheus_status(settings: Settings, instance: str | None, now: datetime) -> tuple[str, str]:
    """``pitr status --format prometheus``: the metrics of the instance (every configured one
    when none is chosen among several), the worst grade, and the textfile refreshed."""
    if instance is not None or len(settings.instances) <= 1:
        names = [settings.instance(instance).name]
    else:
        names = sorted(settings.instances)
    reports = {name: collect(settings, settings.instances[name], now) for name in names}
    write_textfiles(settings, names, now, reports)
    state = max((r.state for r in reports.values()), key=STATES.index)
    return render(reports.values()), state
