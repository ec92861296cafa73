"""Replay through the SQL thread runs under a server id that no replayed transaction carries
(the SQL thread skips events of its own server id): from the plan's binlog writers. What replay
changed in the server is undone however it ends, without hiding why it failed."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pitr.engines.mysql.relay import (
    MAX_SERVER_ID,
    OutOfSpace,
    server_options,
    undoing,
    unused_server_id,
    waiting_for_space,
)
from pitr.errors import PreconditionFailed, ToolFailed


def test_the_largest_server_id_when_free() -> None:
    assert unused_server_id(frozenset({1, 2, 77})) == MAX_SERVER_ID == 4294967295


def test_a_server_id_no_writer_has() -> None:
    taken = frozenset({1, MAX_SERVER_ID, MAX_SERVER_ID - 1})
    assert unused_server_id(taken) == MAX_SERVER_ID - 2


def test_a_server_pitr_starts_writes_what_it_applies_and_has_relay_logs() -> None:
    options = server_options(Path("/srv/restored"))
    assert "--log-slave-updates" in options
    assert "--relay-log=/srv/restored/pitr-relay" in options


def test_undone_after_a_replay_that_ends_well() -> None:
    undone: list[str] = []
    with undoing(lambda: undone.append("settings"), "replay settings"):
        pass
    assert undone == ["settings"]


def test_a_failed_replay_is_undone_and_its_error_is_the_one_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def undo() -> None:
        raise PreconditionFailed("cannot connect to mariadb at /srv/restored/mysqld.sock")

    with (
        caplog.at_level(logging.WARNING, "pitr.mysql"),
        pytest.raises(ToolFailed, match="replay stopped: error 1062"),
        undoing(undo, "replication"),
    ):
        raise ToolFailed("replay stopped: error 1062: Duplicate entry")
    assert "replication not undone: cannot connect to mariadb" in caplog.text


def test_nothing_to_undo_in_a_server_killed_for_want_of_space() -> None:
    undone: list[str] = []
    with pytest.raises(OutOfSpace), undoing(lambda: undone.append("settings"), "settings"):
        raise OutOfSpace("the restored server waited for disk space")
    assert undone == []


def test_a_thread_waiting_for_disk_space_in_either_flavour() -> None:
    assert waiting_for_space(["", "Waiting for someone to free space"])  # MariaDB
    assert waiting_for_space(["Waiting for disk space", "starting"])  # MySQL
    assert not waiting_for_space(["Slave has read all relay log; waiting for more updates"])
    assert not waiting_for_space([])
