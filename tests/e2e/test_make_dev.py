"""`make dev` as a new user runs it: `.venv/bin/dagster dev -w workspace.yaml` with the venv not
activated (no `.venv/bin` on PATH). The code location must load (under `dagster dev` the dbt project
is re-parsed at load, with the venv's dbt, not a `dbt` from PATH)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import requests
from support.e2e_stack import BIN, INSTANCE_TEMPLATE, LOCATION
from support.paths import REPO
from support.ports import free_port

LOAD_TIMEOUT = 240
QUERY = """{ workspaceOrError { __typename ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""


def test_make_dev_loads_the_code_location_without_the_venv_on_path(tmp_path: Path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(INSTANCE_TEMPLATE.read_text())
    port = free_port()
    env = {
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "PATH": "/usr/bin:/bin",
        "DAGSTER_HOME": str(home),
        "TAXI_HOME": str(tmp_path / "taxi_home"),
        "LANG": "C.UTF-8",
    }
    assert not any((Path(p) / "dbt").exists() for p in env["PATH"].split(":"))  # no dbt on PATH
    log = open(tmp_path / "dagster-dev.log", "w")
    proc = subprocess.Popen(
        [str(BIN / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    entry = None
    try:
        deadline = time.monotonic() + LOAD_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                answer = requests.post(f"http://127.0.0.1:{port}/graphql", json={"query": QUERY}, timeout=10)
                entries = answer.json()["data"]["workspaceOrError"]["locationEntries"]
                entry = next((e for e in entries if e["name"] == LOCATION), None)
                if entry and entry["loadStatus"] == "LOADED":
                    break
            except (requests.RequestException, ValueError, KeyError, TypeError):
                pass
            time.sleep(2)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    output = (tmp_path / "dagster-dev.log").read_text()
    assert entry is not None, output[-3000:]
    assert entry["loadStatus"] == "LOADED", output[-3000:]
    assert entry["locationOrLoadError"]["__typename"] == "RepositoryLocation", entry["locationOrLoadError"]
