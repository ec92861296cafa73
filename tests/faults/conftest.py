"""The fault suite: outages, full disks, signals, kill -9, bit flips, against the real servers
of the end-to-end suites (their helpers are shared: see ``faultkit``)."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).parent
for suite in ("postgresql", "mariadb", "mysql"):
    path = str(HERE.parent / "e2e" / suite)
    if path not in sys.path:
        sys.path.append(path)
