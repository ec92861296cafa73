"""OpenStack Swift all-in-one (Debian packages) on private ports and directories.

memcached + account/container/object servers + a proxy with tempauth, one-replica rings on a
plain directory device. The servers still read ``/etc/swift/swift.conf`` (hash prefixes,
storage policies); everything else lives in ``base_dir``. Nothing under /etc is modified.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import swiftclient.client

from .common import (
    ServerStartError,
    free_port,
    log_tail,
    make_base_dir,
    remove_dir,
    start_process,
    stop_process,
    wait_until,
)

SYSTEM_PYTHON = "/usr/bin/python3"  # has python3-swift; the venv does not
SERVICES = ("account", "container", "object")

# Order follows the packaged proxy-server.conf sample: slo/dlo after auth and copy.
PIPELINE = (
    "catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk tempurl "
    "tempauth copy slo dlo versioned_writes proxy-logging proxy-server"
)

# Builds the three rings in one interpreter (~1 s instead of ~6 s of swift-ring-builder).
_RING_SCRIPT = """
import json, sys
from swift.common.ring import RingBuilder
swift_dir, ports = sys.argv[1], json.loads(sys.argv[2])
for name, port in ports.items():
    builder = RingBuilder(8, 1, 1)
    builder.add_dev({'region': 1, 'zone': 1, 'ip': '127.0.0.1', 'port': port,
                     'replication_ip': '127.0.0.1', 'replication_port': port,
                     'device': 'd1', 'weight': 1.0, 'meta': ''})
    builder.rebalance()
    builder.save(f'{swift_dir}/{name}.builder')
    builder.get_ring().save(f'{swift_dir}/{name}.ring.gz')
"""


def _default_section(swift_dir: Path, port: int, devices: Path | None = None) -> str:
    lines = [
        "[DEFAULT]",
        "bind_ip = 127.0.0.1",
        f"bind_port = {port}",
        "workers = 0",
        "user = root",
        f"swift_dir = {swift_dir}",
        "log_level = INFO",
    ]
    if devices is not None:
        lines += [f"devices = {devices}", "mount_check = false", "disable_fallocate = true"]
    return "\n".join(lines) + "\n"


class SwiftServer:
    """A Swift cluster reachable at ``auth_url`` as ``user``/``key`` (tempauth, v1 auth)."""

    host = "127.0.0.1"
    user = "test:tester"
    key = "testing"

    def __init__(self) -> None:
        self.base_dir = make_base_dir("pitr-swift-")
        self.swift_dir = self.base_dir / "etc"
        self.devices = self.base_dir / "devices"
        self.log_dir = self.base_dir / "log"
        for path in (self.swift_dir, self.devices / "d1", self.log_dir):
            path.mkdir(parents=True)
        self.memcached_port = free_port()
        self.ports = {name: free_port() for name in SERVICES}
        self.proxy_port = free_port()
        self.auth_url = f"http://{self.host}:{self.proxy_port}/auth/v1.0"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def __repr__(self) -> str:
        return f"<SwiftServer {self.auth_url}>"

    def log_tail(self, lines: int = 15) -> str:
        parts = []
        for log in sorted(self.log_dir.glob("*.log")):
            tail = log_tail(log, lines)
            if tail:
                parts.append(f"== {log.name} ==\n{tail}")
        return "\n".join(parts)

    def env(self) -> dict[str, str]:
        """``ST_*`` variables as read by the ``swift`` CLI and many tools."""
        return {"ST_AUTH": self.auth_url, "ST_USER": self.user, "ST_KEY": self.key}

    # -- configuration ---------------------------------------------------------------------
    def _write_configs(self) -> dict[str, Path]:
        confs: dict[str, Path] = {}
        for name in SERVICES:
            conf = self.swift_dir / f"{name}-server.conf"
            conf.write_text(
                _default_section(self.swift_dir, self.ports[name], self.devices)
                + f"\n[pipeline:main]\npipeline = {name}-server\n"
                + f"\n[app:{name}-server]\nuse = egg:swift#{name}\n"
            )
            confs[name] = conf
        filters = [f for f in dict.fromkeys(PIPELINE.split()) if f != "proxy-server"]
        sections = {f: f"[filter:{f}]\nuse = egg:swift#{f.replace('-', '_')}\n" for f in filters}
        sections["cache"] = (
            f"[filter:cache]\nuse = egg:swift#memcache\n"
            f"memcache_servers = 127.0.0.1:{self.memcached_port}\n"
        )
        sections["tempauth"] = (
            "[filter:tempauth]\nuse = egg:swift#tempauth\n"
            f"user_{self.user.replace(':', '_')} = {self.key} .admin\n"
        )
        proxy = self.swift_dir / "proxy-server.conf"
        proxy.write_text(
            _default_section(self.swift_dir, self.proxy_port)
            + f"\n[pipeline:main]\npipeline = {PIPELINE}\n"
            + "\n[app:proxy-server]\nuse = egg:swift#proxy\n"
            "account_autocreate = true\nallow_account_management = true\n\n"
            + "\n".join(sections.values())
        )
        confs["proxy"] = proxy
        return confs

    def _ring_builder(self, env: dict[str, str]) -> subprocess.Popen[bytes]:
        return start_process(
            [SYSTEM_PYTHON, "-c", _RING_SCRIPT, str(self.swift_dir), json.dumps(self.ports)],
            self.log_dir / "rings.log",
            env=env,
            cwd=self.base_dir,
        )

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, timeout: float = 90.0) -> None:
        """Start memcached and the four servers; wait until auth + container PUT work.

        The rings are built while the storage servers start (they read rings lazily);
        the proxy, which loads them at start-up, follows once they exist.
        """
        started = time.monotonic()
        env = _server_env()
        try:
            self.procs["memcached"] = start_process(
                [
                    "memcached",
                    "-l",
                    self.host,
                    "-p",
                    str(self.memcached_port),
                    "-U",
                    "0",
                    "-u",
                    "root",
                    "-m",
                    "16",
                ],
                self.log_dir / "memcached.log",
                env=env,
                cwd=self.base_dir,
            )
            confs = self._write_configs()
            rings = self._ring_builder(env)
            for name in SERVICES:
                self._start_server(name, confs[name], env)
            try:
                status = rings.wait(timeout)
            finally:
                stop_process(rings)
            if status != 0:
                raise ServerStartError("swift rings", f"exit {status}", self.log_tail())
            self._start_server("proxy", confs["proxy"], env)
            remaining = timeout - (time.monotonic() - started)
            wait_until(
                self._ready,
                remaining,
                f"Swift proxy on port {self.proxy_port}",
                interval=0.1,
                on_timeout=self.log_tail,
            )
        except BaseException:
            self.stop()
            raise

    def _start_server(self, name: str, conf: Path, env: dict[str, str]) -> None:
        self.procs[name] = start_process(
            [f"swift-{name}-server", conf, "-v"],
            self.log_dir / f"{name}.log",
            env=env,
            cwd=self.base_dir,
        )

    def _ready(self) -> bool:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise ServerStartError("Swift", f"{name} exited {proc.returncode}", self.log_tail())
        base = f"http://{self.host}:{self.proxy_port}"
        with urllib.request.urlopen(f"{base}/healthcheck", timeout=2) as resp:
            if resp.status != 200:
                return False
        url, token = self._auth()
        probe = f"{url}/pitr-harness-probe"
        for method in ("PUT", "DELETE"):
            req = urllib.request.Request(probe, method=method, headers={"X-Auth-Token": token})
            with urllib.request.urlopen(req, timeout=5) as resp:
                if resp.status not in (201, 202, 204):
                    return False
        return True

    def _auth(self) -> tuple[str, str]:
        req = urllib.request.Request(
            self.auth_url, headers={"X-Auth-User": self.user, "X-Auth-Key": self.key}
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.headers["X-Storage-Url"], resp.headers["X-Auth-Token"]

    def stop_proxy(self) -> None:
        """The proxy server only (an outage seen by clients); ``start_proxy`` brings it back."""
        proc = self.procs.pop("proxy", None)
        if proc is not None:
            stop_process(proc, timeout=10)

    def start_proxy(self, timeout: float = 60.0) -> None:
        self._start_server("proxy", self.swift_dir / "proxy-server.conf", _server_env())
        wait_until(self._ready, timeout, f"Swift proxy on port {self.proxy_port}", interval=0.1,
                   on_timeout=self.log_tail)  # fmt: skip

    def is_running(self) -> bool:
        return bool(self.procs) and all(p.poll() is None for p in self.procs.values())

    def stop(self) -> None:
        """Stop the proxy first, memcached last."""
        for name in ("proxy", *SERVICES, "memcached"):
            proc = self.procs.pop(name, None)
            if proc is not None:
                stop_process(proc, timeout=10)

    def destroy(self) -> None:
        try:
            self.stop()
        finally:
            remove_dir(self.base_dir)

    # -- client ----------------------------------------------------------------------------
    def connection(self) -> swiftclient.client.Connection:
        """A python-swiftclient connection (v1 auth)."""
        return swiftclient.client.Connection(
            authurl=self.auth_url,
            user=self.user,
            key=self.key,
            auth_version="1",
            retries=2,
        )

    def create_container(self, name: str) -> str:
        self.connection().put_container(name)
        return name


def _server_env() -> dict[str, str]:
    """The caller's environment minus anything that could redirect /usr/bin/python3."""
    drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSAFEPATH")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    # eventlet's green DNS imports dnspython (~0.3 s per process); we only use IPs.
    env["EVENTLET_NO_GREENDNS"] = "yes"
    return env
