"""moto's S3 emulation as a separate ``moto_server`` process on a free port."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import boto3

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

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

#: Dummy credentials; moto accepts anything, botocore just needs some.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class MotoServer:
    """``moto_server -H 127.0.0.1 -p PORT`` (found next to ``sys.executable``)."""

    host = "127.0.0.1"
    region = "us-east-1"

    def __init__(self, port: int | None = None) -> None:
        self.port = port if port is not None else free_port()
        self.base_dir = make_base_dir("pitr-moto-")
        self.log_file = self.base_dir / "moto.log"
        self.endpoint_url = f"http://{self.host}:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"<MotoServer {self.endpoint_url}>"

    @staticmethod
    def executable() -> Path:
        # Not resolved: the venv's python is a symlink to /usr/bin/python3.
        beside = Path(sys.executable).parent / "moto_server"
        found = shutil.which("moto_server")
        return beside if beside.exists() or found is None else Path(found)

    def env(self) -> dict[str, str]:
        """Variables a subprocess (e.g. the pitr CLI) needs to reach this server."""
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint_url}

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_file, lines)

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=2):
                return True
        except urllib.error.HTTPError:
            return True  # any HTTP answer means it is serving

    def start(self, timeout: float = 60.0) -> None:
        what = f"moto_server on port {self.port}"
        exe = self.executable()
        if not exe.exists():
            raise ServerStartError(what, f"{exe} not found (install moto[server])")
        # Only our variables: the caller's AWS_* settings must not leak into the server.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **CREDENTIALS}
        self.proc = start_process(
            [exe, "-H", self.host, "-p", str(self.port)],
            self.log_file,
            env=env,
            cwd=self.base_dir,
        )
        proc = self.proc

        def ready() -> bool:
            if proc.poll() is not None:
                raise ServerStartError(what, f"exited {proc.returncode}", self.log_tail())
            return self._answers()

        try:
            wait_until(ready, timeout, what, interval=0.1, on_timeout=self.log_tail)
        except ServerStartError:
            stop_process(proc, timeout=5)
            raise

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=10)
            self.proc = None

    def destroy(self) -> None:
        try:
            self.stop()
        finally:
            remove_dir(self.base_dir)

    def reset(self) -> None:
        """Forget all buckets and objects (moto's reset API)."""
        req = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=10):
            pass

    def client(self) -> S3Client:
        """A boto3 S3 client with dummy credentials, independent of the caller's env."""
        session = boto3.session.Session(
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=CREDENTIALS["AWS_SESSION_TOKEN"],
            region_name=self.region,
        )
        return session.client("s3", endpoint_url=self.endpoint_url)

    def create_bucket(self, name: str) -> str:
        """Create bucket ``name`` (must be a valid S3 name) and return it."""
        self.client().create_bucket(Bucket=name)
        return name
