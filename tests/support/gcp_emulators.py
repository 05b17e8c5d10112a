"""The GCP target's emulators: a GCS emulator and the BigQuery emulator on 127.0.0.1, started
and stopped by the session (support/gcp_env.py is one test's bucket and datasets on them).

  GCS       gcp-storage-emulator (a dev dependency of the main venv), objects on disk under
            <root>/gcs/.cloudstorage/<bucket>/<key>
  BigQuery  bqemulator 1.4.0 in its own venv (scripts/bq-emulator-venv.sh), whose load jobs resolve
            gs://<bucket>/<key> under BQEMU_GCS_LOCAL_ROOT: pointed at the GCS emulator's folder,
            so a load job reads exactly what the lake uploaded.

Nothing may leave the machine: the google clients get anonymous credentials and explicit
endpoints, the metadata server is disabled (NO_GCE_CHECK, GCE_METADATA_HOST=127.0.0.1:1), and
`loopback_only()` makes any other connection attempt in the test process fail.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from support.paths import REPO
from support.ports import free_port

BQ_VENV = Path(os.environ.get("TAXI_BQ_EMULATOR_VENV", REPO / ".venv-bqemulator"))
PROJECT = "test-project"
# Set for the whole session (and inherited by dbt subprocesses): no metadata-server probe.
NO_METADATA = {
    "NO_GCE_CHECK": "true",
    "GCE_METADATA_HOST": "127.0.0.1:1",
    "GCE_METADATA_IP": "127.0.0.1:1",
    "GOOGLE_CLOUD_PROJECT": PROJECT,
}
LOOPBACK = ("127.", "::1", "localhost")


def _wait_http(url: str, proc: subprocess.Popen, log: Path, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} emulator exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {seconds} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def ensure_bq_emulator_venv() -> Path:
    """Runs scripts/bq-emulator-venv.sh (idempotent; about a minute the first time)."""
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "bq-emulator-venv.sh"), str(BQ_VENV)],
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "PYTHON": os.environ.get("PYTHON", "python3")},
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"scripts/bq-emulator-venv.sh failed ({done.returncode}):\n"
            f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
        )
    return BQ_VENV / "bin" / "bqemulator"


@dataclass
class Emulators:
    gcs_endpoint: str
    bq_endpoint: str
    gcs_root: Path  # <root>/.cloudstorage: <bucket>/<key> on disk


@contextmanager
def run_emulators(root: Path) -> Iterator[Emulators]:
    bqemulator = ensure_bq_emulator_venv()
    gcs_data = root / "gcs"
    gcs_data.mkdir(parents=True, exist_ok=True)
    gcs_port, rest_port, grpc_port = free_port(), free_port(), free_port()
    gcs_log, bq_log = root / "gcs.log", root / "bq.log"
    procs: list[subprocess.Popen] = []
    try:
        with open(gcs_log, "w") as out:
            gcs = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gcp_storage_emulator",
                    "-d",
                    str(gcs_data),
                    "start",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(gcs_port),
                    "-q",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=root,
            )
        procs.append(gcs)
        with open(bq_log, "w") as out:
            bq = subprocess.Popen(
                [
                    str(bqemulator),
                    "start",
                    "--rest-host",
                    "127.0.0.1",
                    "--rest-port",
                    str(rest_port),
                    "--grpc-host",
                    "127.0.0.1",
                    "--grpc-port",
                    str(grpc_port),
                    "--project",
                    PROJECT,
                    "--log-level",
                    "warning",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=root,
                env={
                    **os.environ,
                    **NO_METADATA,
                    "HOME": str(BQ_VENV / "duckdb-home"),
                    "BQEMU_GCS_LOCAL_ROOT": str(gcs_data / ".cloudstorage"),
                    # Its upload bodies in the test's folder: the default, <tmp>/bqemu_uploads, is one
                    # folder per machine, owned by whichever user ran the emulator first (then a 500
                    # on every load job of another user).
                    "BQEMU_UPLOAD_STAGING_DIR": str(root / "bq-uploads"),
                },
            )
        procs.append(bq)
        gcs_endpoint, bq_endpoint = f"http://127.0.0.1:{gcs_port}", f"http://127.0.0.1:{rest_port}"
        _wait_http(f"{gcs_endpoint}/storage/v1/b?project={PROJECT}", gcs, gcs_log)
        _wait_http(f"{bq_endpoint}/bigquery/v2/projects/{PROJECT}/datasets", bq, bq_log)
        yield Emulators(
            gcs_endpoint=gcs_endpoint, bq_endpoint=bq_endpoint, gcs_root=gcs_data / ".cloudstorage"
        )
    finally:
        for proc in procs:
            _stop(proc)


@contextmanager
def loopback_only() -> Iterator[None]:
    """Any connection (or name lookup) to a non-loopback address fails loudly in this process."""
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def host_of(address) -> str:
        return str(address[0]) if isinstance(address, tuple) else str(address)

    def check(host: str) -> None:
        if host and not host.startswith(LOOPBACK):
            raise OSError(f"test tried to reach {host}: only loopback is allowed in tests/gcp")

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            check(host_of(address))
        return real_connect(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if host is not None:
            check(host if isinstance(host, str) else host.decode())
        return real_getaddrinfo(host, *args, **kwargs)

    with (
        mock.patch.object(socket.socket, "connect", connect),
        mock.patch.object(socket, "getaddrinfo", getaddrinfo),
    ):
        yield
