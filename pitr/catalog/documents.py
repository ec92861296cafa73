"""Reading and writing catalog documents (JSON) in the repository, in parallel where useful."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from pitr.errors import FormatError
from pitr.storage.base import Storage

T = TypeVar("T")
R = TypeVar("R")
WORKERS = 8


def read_document(storage: Storage, key: str) -> Any:
    """The JSON document at ``key``; a corrupt or truncated one is a ``FormatError`` naming it."""
    data = storage.get_bytes(key)
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(
            f"{key}: corrupt catalog document ({len(data)} bytes, not valid JSON: {exc})",
            hint="restore the object from a copy, or run 'pitr catalog rebuild' if it is a summary",
        ) from None


def encode(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def write_document(storage: Storage, key: str, doc: Any, *, if_absent: bool = False) -> None:
    storage.put_bytes(key, encode(doc), if_absent=if_absent)


def parallel(fn: Callable[[T], R], items: Iterable[T], workers: int = WORKERS) -> list[R]:
    """``[fn(x) for x in items]`` on a thread pool (storage requests wait on the network)."""
    todo = list(items)
    if len(todo) <= 1:
        return [fn(x) for x in todo]
    with ThreadPoolExecutor(min(workers, len(todo)), thread_name_prefix="catalog") as pool:
        return list(pool.map(fn, todo))
