"""A real Dagster instance on this machine for the end-to-end tests (`start_stack`): a code server,
the webserver and the daemon as processes on 127.0.0.1; dagster-postgres storage in a fresh
database of the session's embedded PostgreSQL; the local instance configuration shipped in
taxi_platform/instance/dagster.yaml (queued runs, the warehouse pool's limit); a source's files
as the release source. Every process is stopped (by its process group) at the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import dagster as dg
import psycopg2
import requests
import yaml

from support.paths import REPO
from support.ports import free_port
from support.run_results import query
from taxi_platform.assets.dbt import DBT_REFERENCE_KEYS
from taxi_platform.assets.zones import reference_file_key, reference_table_key
from taxi_platform.datasets import ZONES
from taxi_platform.sample.generator import GeneratedFile

BIN = Path(sys.executable).parent
INSTANCE_TEMPLATE = REPO / "taxi_platform" / "instance" / "dagster.yaml"
ARTIFACTS = REPO / "test-artifacts"
LOCATION = "taxi_platform"
REFERENCE_KEYS = [reference_file_key(ZONES), reference_table_key(ZONES), *DBT_REFERENCE_KEYS]
STARTUP_TIMEOUT = 180


def with_database(url: str, db: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


@dataclass
class Stack:
    home: Path  # DAGSTER_HOME
    web_url: str
    dagster_db_url: str
    warehouse_url: str
    warehouse_schema: str
    staging_schema: str
    dbt_schema: str
    mirror: Path
    logs: Path
    pool_limit: int
    generated: dict[tuple[str, date], GeneratedFile] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def graphql(self, text: str, variables: dict | None = None) -> dict:
        response = requests.post(
            f"{self.web_url}/graphql", json={"query": text, "variables": variables or {}}, timeout=60
        )
        response.raise_for_status()
        body = response.json()
        assert not body.get("errors"), body["errors"]
        return body["data"]

    @contextmanager
    def instance(self) -> Iterator[dg.DagsterInstance]:
        with dg.DagsterInstance.from_config(str(self.home)) as instance:
            yield instance

    def log_tail(self, chars: int = 4000) -> str:
        return "\n".join(
            f"--- {p.name} ---\n{p.read_text(errors='replace')[-chars:]}"
            for p in sorted(self.logs.glob("*.log"))
        )

    def assert_alive(self) -> None:
        for name, process in self.processes.items():
            assert process.poll() is None, f"{name} exited with {process.returncode}\n{self.log_tail()}"


def stop_processes(processes: dict[str, subprocess.Popen]) -> None:
    """Only the processes this fixture started, each with its process group (code server children,
    run workers)."""
    for process in processes.values():
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for process in processes.values():
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def wait_until(check, what: str, stack: Stack, timeout: float = STARTUP_TIMEOUT, every: float = 1.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        stack.assert_alive()
        try:
            result = check()
            if result:
                return result
        except (requests.RequestException, AssertionError) as exc:
            last = exc
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what} ({last})\n{stack.log_tail()}")


@contextmanager
def start_stack(
    session_root: Path, pg_url: str, source: Callable[[Path], tuple[dict[str, str], list]]
) -> Iterator[Stack]:
    """A code server, webserver and daemon; `source(mirror_dir)` writes the source's files and
    returns the settings that point at them, and what it generated."""
    suffix = uuid.uuid4().hex[:8]
    root = session_root / f"e2e_{suffix}"
    (root / "logs").mkdir(parents=True)
    home = root / "dagster_home"
    home.mkdir()

    # Dagster's storage: a fresh database beside the warehouse.
    dagster_db = f"dagster_e2e_{suffix}"
    query(pg_url, f'CREATE DATABASE "{dagster_db}"')
    dagster_db_url = with_database(pg_url, dagster_db)
    config = yaml.safe_load(INSTANCE_TEMPLATE.read_text())
    config["storage"] = {"postgres": {"postgres_url": dagster_db_url}}
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))

    mirror = root / "mirror"
    source_env, generated = source(mirror)
    code_port, web_port = free_port(), free_port()
    (root / "workspace.yaml").write_text(
        yaml.safe_dump(
            {
                "load_from": [
                    {"grpc_server": {"host": "127.0.0.1", "port": code_port, "location_name": LOCATION}}
                ]
            }
        )
    )

    stack = Stack(
        home=home,
        web_url=f"http://127.0.0.1:{web_port}",
        dagster_db_url=dagster_db_url,
        warehouse_url=pg_url,
        warehouse_schema=f"e2e_w_{suffix}",
        staging_schema=f"e2e_s_{suffix}",
        dbt_schema=f"e2e_d_{suffix}",
        mirror=mirror,
        logs=root / "logs",
        pool_limit=config["concurrency"]["pools"]["default_limit"],
        generated={(g.dataset, g.month): g for g in generated},
    )
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "DAGSTER_HOME": str(home),
        "TAXI_HOME": str(root / "taxi_home"),
        **source_env,
        "TAXI_POSTGRES_URL": pg_url,
        "TAXI_WAREHOUSE_SCHEMA": stack.warehouse_schema,
        "TAXI_STAGING_SCHEMA": stack.staging_schema,
        "TAXI_DBT_SCHEMA": stack.dbt_schema,
        "TAXI_FAILURE_LOG": str(root / "failures.jsonl"),
        # Offline: the release sensor is stopped by default; never let it reach GitHub anyway.
        "TAXI_RELEASES_API_URL": "http://127.0.0.1:9/none",
    }
    # The zone lookup and the unpartitioned dbt models, loaded before the daemon starts: the
    # monthly dbt models need them, so the daemon's dbt automation can build each loaded month.
    _load_reference(stack, env)

    workspace = str(root / "workspace.yaml")
    commands = {
        "code-server": [
            str(BIN / "dagster"),
            "code-server",
            "start",
            "-m",
            "taxi_platform.definitions",
            "-h",
            "127.0.0.1",
            "-p",
            str(code_port),
            "--location-name",
            LOCATION,
        ],
        "webserver": [
            str(BIN / "dagster-webserver"),
            "-w",
            workspace,
            "-h",
            "127.0.0.1",
            "-p",
            str(web_port),
        ],
        "daemon": [str(BIN / "dagster-daemon"), "run", "-w", workspace],
    }
    try:
        for name, command in commands.items():
            with open(stack.logs / f"{name}.log", "w") as log:
                stack.processes[name] = subprocess.Popen(
                    command, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            if name == "code-server":
                wait_until(
                    lambda: (
                        subprocess.run(
                            [str(BIN / "dagster"), "api", "grpc-health-check", "-p", str(code_port)],
                            capture_output=True,
                            env=env,
                        ).returncode
                        == 0
                    ),
                    "the code server",
                    stack,
                )
        wait_until(lambda: requests.get(f"{stack.web_url}/server_info", timeout=5).ok, "the webserver", stack)

        def location_loaded() -> bool:
            data = stack.graphql("""{ workspaceOrError { __typename ... on Workspace { locationEntries {
                name loadStatus locationOrLoadError { __typename } } } } }""")
            entries = data["workspaceOrError"]["locationEntries"]
            return any(
                e["name"] == LOCATION
                and e["loadStatus"] == "LOADED"
                and e["locationOrLoadError"]["__typename"] == "RepositoryLocation"
                for e in entries
            )

        wait_until(location_loaded, "the code location in the webserver", stack)

        def daemons_alive() -> bool:
            with stack.instance() as instance:
                beats = instance.get_daemon_heartbeats()
            return {"BACKFILL", "QUEUED_RUN_COORDINATOR"} <= set(beats)

        wait_until(daemons_alive, "the daemon's heartbeats", stack)
        yield stack
    finally:
        stop_processes(stack.processes)
        try:
            query(pg_url, f'DROP DATABASE IF EXISTS "{dagster_db}" WITH (FORCE)')
        except psycopg2.Error:
            pass


def _load_reference(stack: Stack, env: dict[str, str]) -> None:
    from taxi_platform.definitions import build_definitions
    from taxi_platform.settings import Settings

    saved = dict(os.environ)
    os.environ.update({k: v for k, v in env.items() if k.startswith(("TAXI_", "DAGSTER_HOME"))})
    try:
        defs = build_definitions(Settings.from_env())
        job = defs.resolve_implicit_global_asset_job_def()
        with stack.instance() as instance:
            result = job.execute_in_process(
                instance=instance, asset_selection=REFERENCE_KEYS, raise_on_error=False
            )
        assert result.success, [e.message for e in result.all_events if e.is_failure]
    finally:
        os.environ.clear()
        os.environ.update(saved)
