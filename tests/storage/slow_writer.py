"""Child process for the killed-writer test: starts a large upload, then stalls forever.

Reads the repository settings as JSON on stdin (never on argv: they may hold secrets), prints
``STREAMING`` once more than the first part has been handed to the driver, and blocks.
"""

from __future__ import annotations

import json
import sys
import threading

from pitr.config.settings import RepositorySettings
from pitr.storage import open_storage
from pitr.storage.base import part_size


class StallingSource:
    def __init__(self, stall_after: int) -> None:
        self.sent = 0
        self.stall_after = stall_after

    def read(self, n: int = -1, /) -> bytes:
        if self.sent >= self.stall_after:
            print("STREAMING", flush=True)
            threading.Event().wait()  # until killed
        n = min(n if n > 0 else 1 << 20, self.stall_after - self.sent)
        self.sent += n
        return b"x" * n


def main() -> None:
    settings = RepositorySettings(**json.load(sys.stdin))
    key = sys.argv[1]
    open_storage(settings).put(key, StallingSource(2 * part_size(0) + 1000))


if __name__ == "__main__":
    main()
