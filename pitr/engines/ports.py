"""``restore --port``: the port is checked before anything is written — in range (exit 2),
not in use on this host and bindable by the OS user the restored server runs as (exit 6) —
rather than found wrong by the server after the whole cluster has been restored."""

from __future__ import annotations

import errno
import pwd
import socket
from pathlib import Path

from pitr.errors import PreconditionFailed, UsageError

UNPRIVILEGED_START = Path("/proc/sys/net/ipv4/ip_unprivileged_port_start")


def check_port(port: int, os_user: str) -> None:
    """Refuse ``port`` unless a server running as ``os_user`` can listen on it now."""
    if not 1 <= port <= 65535:
        raise UsageError(f"--port {port} is not a TCP port (1-65535)")
    lowest = _unprivileged_start()
    if port < lowest and not _is_root(os_user):
        raise PreconditionFailed(
            f"--port {port}: the restored server runs as {os_user!r}, which cannot listen on "
            f"a port below {lowest}; nothing was written",
            hint=f"choose a free port from {lowest} to 65535",
        )
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the servers do: a port whose last connections are in TIME_WAIT is still usable.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError as exc:
            reason = "is in use on this host" if exc.errno == errno.EADDRINUSE else (
                f"cannot be bound: {exc.strerror}")  # fmt: skip
            raise PreconditionFailed(
                f"--port {port} {reason}; nothing was written",
                hint="choose a free port ('ss -ltn' lists those in use)",
            ) from None


def _is_root(os_user: str) -> bool:
    try:
        return pwd.getpwnam(os_user).pw_uid == 0
    except KeyError:
        return False


def _unprivileged_start() -> int:
    try:
        return int(UNPRIVILEGED_START.read_text().strip())
    except (OSError, ValueError):
        return 1024
