"""The MySQL end-to-end tests share the MariaDB suite's helpers (``my_e2e``): the same site,
command line and story, with MySQL's server class and SQL."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "mariadb"))
