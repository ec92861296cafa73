"""``pitr recover`` (in place, under the instance lock) and ``pitr restore`` (beside the
instance): the engine restores and replays the plan this module hands it, proven again each
time the engine asks (it may first archive the newest logs, which can hold the target)."""

from __future__ import annotations

from pathlib import Path

from pitr.commands.locks import lock_for
from pitr.commands.plan import replan_of
from pitr.config.settings import Settings
from pitr.domain.targets import Target
from pitr.engines import engine_and_store
from pitr.engines.recovery import Recovered


def recover(
    settings: Settings, instance: str | None, target: Target, lock_wait: float
) -> Recovered:
    engine, store = engine_and_store(settings, instance)
    with lock_for(settings, store, "recover", lock_wait):
        return engine.recover(store, replan_of(store, target))


def restore(
    settings: Settings, instance: str | None, target: Target, dest: Path, port: int | None
) -> Recovered:
    engine, store = engine_and_store(settings, instance)
    return engine.restore(store, replan_of(store, target), dest, port)
