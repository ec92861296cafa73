"""Replay through the SQL thread runs under a server id that no replayed transaction carries
(the SQL thread skips events of its own server id): from the plan's binlog writers."""

from __future__ import annotations

from pathlib import Path

from pitr.engines.mysql.relay import MAX_SERVER_ID, server_options, unused_server_id


def test_the_largest_server_id_when_free() -> None:
    assert unused_server_id(frozenset({1, 2, 77})) == MAX_SERVER_ID == 4294967295


def test_a_server_id_no_writer_has() -> None:
    taken = frozenset({1, MAX_SERVER_ID, MAX_SERVER_ID - 1})
    assert unused_server_id(taken) == MAX_SERVER_ID - 2


def test_a_server_pitr_starts_writes_what_it_applies_and_has_relay_logs() -> None:
    options = server_options(Path("/srv/restored"))
    assert "--log-slave-updates" in options
    assert "--relay-log=/srv/restored/pitr-relay" in options
