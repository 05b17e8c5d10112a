"""Run start under `make dev`: how long a run launched from the UI waits, once the queue lets it go,
before its first step starts (target: <= 5 s), against the floor of any run worker: a fresh Python
importing the code location.

    python -m bench.run_start [--rows 2000] [--baseline-repeat 3] [--out bench/results/run_start.json]
                              [--automation] [--tmp /tmp] [--keep]

It creates a fresh TAXI_HOME / DAGSTER_HOME in a temporary folder (the instance file of
taxi_platform/instance/dagster.yaml: queued runs, default SQLite storage, as `make dev` uses), a
mirror of generated months (file://) as the release source, the releases API pointed at nothing
(offline), and the embedded PostgreSQL (it starts itself under TAXI_HOME on first use). Then it
starts `dagster dev -w workspace.yaml` as the Makefile does (the venv's `dagster`, the venv NOT on
PATH, the repository as working directory, a free port), waits for the code location and the
daemon, stops the dbt automation sensor as the UI's toggle would (`--automation` leaves it
running: it then launches dbt runs of its own after each trip load, which overlap the measured
ones; they are listed), and launches through the GraphQL API the UI uses (`launchPipelineExecution` of the asset
job with an asset selection and, for monthly assets, a `dagster/partition` tag), one after
another, each waited for:

  reference       the zone lookup file and table, the unpartitioned dbt models
  yellow 2019-01  raw file -> staging -> final (+ checks)
  yellow 2019-02  the same, another month
  green 2019-01   the same, the other colour (the monthly dbt models read both)
  dbt 2019-01     the monthly dbt models of the month
  dbt 2019-01 (2) the same again: the connection's partial-parse state is kept now

From each run's event log: enqueue, dequeue (RUN_DEQUEUED; Dagster 1.13 does not write it, so
RUN_STARTING, which the queue daemon writes as it hands the run to the launcher), the worker's
"Started process for run" (spawned by the code server, `dagster` imported, instance opened),
RUN_START (the code location imported, the job loaded), "Executing steps", the first STEP_START,
every step's duration, and whether dbt printed "Unable to do partial parsing" (the run's compute
logs). The baseline is the wall time of fresh `python -c "import taxi_platform.definitions"`
processes in the same environment (the fastest of `--baseline-repeat`, and one more after the
runs; `python -c pass`, `import dagster` and `import dagster, dagster_dbt` beside it, and the
import with DAGSTER_IS_DEV_CLI=1 as `dagster dev` sets it, which may re-parse the dbt project). Everything started is stopped at the end (dagster dev's process
group, `taxi-platform db stop` and `db remove` for the embedded server), the folder removed.
Results: bench/results/run_start.json and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's bin: the Makefile's $(BIN)
INSTANCE_TEMPLATE = REPO / "taxi_platform" / "instance" / "dagster.yaml"
DEFAULT_OUT = REPO / "bench" / "results" / "run_start.json"
LOCATION = "taxi_platform"
REPOSITORY = "__repository__"  # a Definitions object's repository
ASSET_JOB = "__ASSET_JOB"  # what the UI's "Materialize" launches
TARGET_SECONDS = 5.0  # dequeue -> first STEP_START
STARTUP_TIMEOUT = 300
RUN_TIMEOUT = 900
MONTHS = (date(2019, 1, 1), date(2019, 2, 1))
PARTIAL_PARSE_MISS = "Unable to do partial parsing"

LOCATION_QUERY = """{ workspaceOrError { __typename ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
ASSET_NODES = """{ assetNodes { assetKey { path } opNames isPartitioned } }"""
SENSOR = """
query Sensor($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename ... on Sensor { id sensorState { status } } ... on PythonError { message }
  }
}"""
STOP_SENSOR = """
mutation Stop($id: String!) {
  stopSensor(id: $id) {
    __typename ... on StopSensorMutationResult { instigationState { status } }
    ... on PythonError { message }
  }
}"""
LAUNCH = """
mutation Launch($executionParams: ExecutionParams!) {
  launchPipelineExecution(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PythonError { message stack }
    ... on Error { message }
  }
}"""


class BenchError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_env(home: Path, mirror: Path) -> dict[str, str]:
    """`make dev`'s environment: the user's, the venv not activated (its bin not on PATH), no TAXI_*
    setting of this shell (TAXI_POSTGRES_URL unset: the embedded server)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TAXI_", "DAGSTER_")) and k not in ("VIRTUAL_ENV", "PYTHONPATH")
    }
    env["PATH"] = (
        ":".join(
            p
            for p in os.environ.get("PATH", "/usr/bin:/bin").split(":")
            if p and Path(p).resolve() != BIN.resolve()
        )
        or "/usr/bin:/bin"
    )
    env.update(
        {
            "TAXI_HOME": str(home),
            "DAGSTER_HOME": str(home / "dagster"),
            "TAXI_SOURCE": "course",
            "TAXI_SOURCE_URL": mirror.as_uri(),
            "TAXI_RELEASES_API_URL": "http://127.0.0.1:9/none",  # offline
        }
    )
    return env


# --- the baseline: a fresh interpreter importing the code location ---------------------------------
BASELINES = {
    "python": "pass",
    "import_dagster": "import dagster",
    "import_dagster_dbt": "import dagster, dagster_dbt",
    "import_definitions": "import taxi_platform.definitions",
}


def baseline(
    env: dict[str, str], repeat: int, dev_repeat: int = 1, only: tuple[str, ...] | None = None
) -> dict:
    """Wall seconds of `python -c <code>` processes in dagster dev's environment, the fastest of
    `repeat`. `import_definitions` is the floor of a run worker. `import_definitions_dev` is the
    same import with DAGSTER_IS_DEV_CLI=1, as `dagster dev` sets it for the processes it starts:
    the code location then checks that the dbt manifest is current (and re-parses it if not), as
    its code server does at load (and a run worker, unless it skips the check)."""
    codes = {**BASELINES, "import_definitions_dev": BASELINES["import_definitions"]}
    out = {}
    for name, code in codes.items():
        if only is not None and name not in only:
            continue
        child = {**env, "DAGSTER_IS_DEV_CLI": "1"} if name.endswith("_dev") else env
        samples = []
        for _ in range(dev_repeat if name.endswith("_dev") else repeat):
            t = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-c", code], cwd=REPO, env=child, capture_output=True, text=True, timeout=300
            )
            samples.append(time.perf_counter() - t)
            if proc.returncode != 0:
                raise BenchError(f"python -c {code!r} failed:\n{proc.stderr[-3000:]}")
        out[name] = {"seconds": min(samples), "samples": [round(s, 3) for s in samples]}
    return out


# --- dagster dev -----------------------------------------------------------------------------------
class DevServer:
    def __init__(self, env: dict[str, str], log_path: Path):
        self.env, self.log_path = env, log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log_path, "w") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [
                    str(BIN / "dagster"),
                    "dev",
                    "-w",
                    "workspace.yaml",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                ],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def assert_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            raise BenchError(f"dagster dev exited ({self.proc and self.proc.returncode})\n{self.log_tail()}")

    def graphql(self, text: str, variables: dict | None = None, timeout: float = 60) -> dict:
        response = requests.post(
            f"{self.url}/graphql", json={"query": text, "variables": variables or {}}, timeout=timeout
        )
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise BenchError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def wait_until_loaded(self, dagster_home: Path) -> float:
        """Seconds until the webserver has the code location loaded and the daemon's run queue
        heartbeats."""
        import dagster as dg

        started = time.monotonic()
        deadline = started + STARTUP_TIMEOUT
        last: object = None
        while time.monotonic() < deadline:
            self.assert_alive()
            try:
                entries = self.graphql(LOCATION_QUERY, timeout=10)["workspaceOrError"]["locationEntries"]
                entry = next((e for e in entries if e["name"] == LOCATION), None)
                last = entry
                if entry and entry["loadStatus"] == "LOADED":
                    if entry["locationOrLoadError"]["__typename"] != "RepositoryLocation":
                        raise BenchError(f"the code location failed to load: {entry['locationOrLoadError']}")
                    break
            except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
                last = exc
            time.sleep(1)
        else:
            raise BenchError(f"timed out waiting for the code location ({last})\n{self.log_tail()}")
        loaded = time.monotonic() - started
        while time.monotonic() < deadline:
            self.assert_alive()
            with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
                if "QUEUED_RUN_COORDINATOR" in instance.get_daemon_heartbeats():
                    return loaded
            time.sleep(1)
        raise BenchError(f"timed out waiting for the daemon's run queue\n{self.log_tail()}")

    def stop(self) -> None:
        """dagster dev and everything it started (webserver, daemon, code servers, run workers):
        its process group."""
        if self.proc is None:
            return
        for sig, wait in ((signal.SIGTERM, 60), (signal.SIGKILL, 30)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
            # its children may outlive it briefly; the group's stragglers get the same signal
            time.sleep(2)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


# --- the runs --------------------------------------------------------------------------------------
def plan(server: DevServer) -> list[dict]:
    """The runs to launch, as the UI would: asset keys and a partition tag."""
    from taxi_platform.assets.trip_keys import final_key, raw_file_key, staging_key
    from taxi_platform.assets.zones import reference_file_key, reference_table_key
    from taxi_platform.datasets import GREEN, YELLOW, ZONES

    nodes = server.graphql(ASSET_NODES)["assetNodes"]

    def op_keys(op: str) -> list[list[str]]:
        return sorted(n["assetKey"]["path"] for n in nodes if op in (n["opNames"] or []))

    reference_dbt, monthly_dbt = op_keys("dbt_reference_models"), op_keys("dbt_monthly_models")
    if not reference_dbt or not monthly_dbt:
        raise BenchError(f"no dbt assets found in the code location: {reference_dbt=} {monthly_dbt=}")

    def trips(spec) -> list[list[str]]:
        return [list(k.path) for k in (raw_file_key(spec), staging_key(spec), final_key(spec))]

    jan, feb = (f"{m:%Y-%m-%d}" for m in MONTHS)
    return [
        {
            "name": "reference",
            "assets": [
                list(reference_file_key(ZONES).path),
                list(reference_table_key(ZONES).path),
                *reference_dbt,
            ],
            "partition": None,
        },
        {"name": "yellow 2019-01", "assets": trips(YELLOW), "partition": jan},
        {"name": "yellow 2019-02", "assets": trips(YELLOW), "partition": feb},
        {"name": "green 2019-01", "assets": trips(GREEN), "partition": jan},
        {"name": "dbt 2019-01", "assets": monthly_dbt, "partition": jan},
        {"name": "dbt 2019-01 again", "assets": monthly_dbt, "partition": jan},
    ]


def stop_sensor(server: DevServer, name: str) -> str:
    """Stop a sensor as the UI's toggle does (in this benchmark's instance only)."""
    got = server.graphql(
        SENSOR,
        {"selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "sensorName": name}},
    )
    sensor = got["sensorOrError"]
    if sensor["__typename"] != "Sensor":
        raise BenchError(f"sensor {name}: {sensor}")
    stopped = server.graphql(STOP_SENSOR, {"id": sensor["id"]})["stopSensor"]
    if stopped["__typename"] != "StopSensorMutationResult":
        raise BenchError(f"stopping sensor {name}: {stopped}")
    return stopped["instigationState"]["status"]


def launch(server: DevServer, assets: list[list[str]], partition: str | None) -> str:
    tags = [{"key": "dagster/partition", "value": partition}] if partition else []
    params = {
        "selector": {
            "repositoryLocationName": LOCATION,
            "repositoryName": REPOSITORY,
            "pipelineName": ASSET_JOB,
            "assetSelection": [{"path": p} for p in assets],
        },
        "mode": "default",
        "runConfigData": {},
        "executionMetadata": {"tags": tags},
    }
    data = server.graphql(LAUNCH, {"executionParams": params})["launchPipelineExecution"]
    if data["__typename"] != "LaunchRunSuccess":
        raise BenchError(f"launch failed: {data}")
    return data["run"]["runId"]


def wait_for_run(server: DevServer, dagster_home: Path, run_id: str) -> str:
    import dagster as dg

    deadline = time.monotonic() + RUN_TIMEOUT
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        while time.monotonic() < deadline:
            server.assert_alive()
            run = instance.get_run_by_id(run_id)
            if run is not None and run.is_finished:
                return run.status.value
            time.sleep(0.5)
    raise BenchError(f"run {run_id} did not finish in {RUN_TIMEOUT} s\n{server.log_tail()}")


def _engine_marker(message: str) -> str | None:
    for prefix, name in (
        ("Started process for run", "worker_started"),
        ("Executing steps", "executing_steps"),
        ("Starting initialization of resources", "resources_init_started"),
        ("Finished initialization of resources", "resources_init_finished"),
    ):
        if message.startswith(prefix):
            return name
    return None


def timings(dagster_home: Path, run_id: str, launched_at: float) -> dict:
    """What the run's event log says about its start, and each step's duration."""
    import dagster as dg
    from dagster import DagsterEventType as T

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        entries = instance.all_logs(run_id)
        run = instance.get_run_by_id(run_id)
    marks: dict[str, float] = {}
    steps: dict[str, dict] = {}
    timeline: list[tuple[float, str, str | None, str]] = []
    first_step = None

    def mark(name: str, ts: float) -> None:
        marks.setdefault(name, ts)

    for e in entries:
        ev = e.dagster_event
        kind = ev.event_type if ev else None
        if kind == T.RUN_ENQUEUED:
            mark("enqueued", e.timestamp)
        elif kind == T.RUN_DEQUEUED:
            mark("dequeued", e.timestamp)
        elif kind == T.RUN_STARTING:
            mark("starting", e.timestamp)
        elif kind == T.RUN_START:
            mark("run_start", e.timestamp)
        elif kind in (T.RUN_SUCCESS, T.RUN_FAILURE, T.RUN_CANCELED):
            mark("run_end", e.timestamp)
        elif kind == T.STEP_START:
            mark("first_step_start", e.timestamp)
            first_step = first_step or e.step_key
            if e.step_key is not None:  # a step event always names its step
                steps.setdefault(e.step_key, {})["start"] = e.timestamp
        elif kind in (T.STEP_SUCCESS, T.STEP_FAILURE, T.STEP_SKIPPED):
            if e.step_key is not None:
                step = steps.setdefault(e.step_key, {})
                step["end"] = e.timestamp
                step["status"] = kind.value
        elif kind in (T.ENGINE_EVENT, T.RESOURCE_INIT_STARTED, T.RESOURCE_INIT_SUCCESS):
            name = _engine_marker(e.user_message or (ev.message if ev else "") or "")
            if name and (e.step_key is None or name.startswith("resources")):
                mark(name if e.step_key is None else f"first_step_{name}", e.timestamp)
        if "first_step_start" not in marks or len(timeline) < 40:
            timeline.append(
                (
                    e.timestamp,
                    kind.value if kind else "LOG",
                    e.step_key,
                    (e.user_message or (ev.message if ev else "") or "")[:100],
                )
            )
    dequeued = marks.get("dequeued", marks.get("starting"))
    if dequeued is None or "first_step_start" not in marks:
        raise BenchError(f"run {run_id}: no dequeue or no step start in its event log: {sorted(marks)}")

    def since(name: str, origin: float | None = dequeued) -> float | None:
        return None if name not in marks or origin is None else round(marks[name] - origin, 3)

    return {
        "run_id": run_id,
        "status": run.status.value if run else None,
        "dequeued_event": "RUN_DEQUEUED" if "dequeued" in marks else "RUN_STARTING",
        "dequeued_at": dequeued,
        "launch_to_dequeued": round(dequeued - launched_at, 3),
        "dequeue_to_first_step": round(marks["first_step_start"] - dequeued, 3),
        "dequeue_to_run_start": since("run_start"),
        "phases": {  # seconds after the dequeue
            "starting": since("starting"),
            "worker_started": since("worker_started"),
            "run_start": since("run_start"),
            "executing_steps": since("executing_steps"),
            "first_step_start": since("first_step_start"),
            "run_end": since("run_end"),
        },
        "first_step": first_step,
        "steps": {
            k: {
                "seconds": round(v["end"] - v["start"], 3) if "start" in v and "end" in v else None,
                "status": v.get("status"),
            }
            for k, v in steps.items()
        },
        "timeline": [
            {"t": round(ts - dequeued, 3), "event": kind, "step": step, "message": msg}
            for ts, kind, step, msg in timeline
        ],
    }


def dbt_parse_findings(dagster_home: Path, run_id: str) -> dict:
    """dbt's own lines in the run's compute logs (dagster-dbt writes dbt's output to the step's
    stdout): whether it re-parsed the whole project, and its partial-parse / parse lines."""
    folder = dagster_home / "storage" / run_id
    lines = []
    for path in sorted(folder.rglob("*")) if folder.exists() else []:
        if path.is_file() and path.suffix in (".out", ".err", ".log", ""):
            for line in path.read_text(errors="replace").splitlines():
                if any(
                    s in line
                    for s in (
                        PARTIAL_PARSE_MISS,
                        "partial parse",
                        "Partial parse",
                        "Running with dbt",
                        "Found ",
                        "Concurrency:",
                    )
                ):
                    lines.append(_dbt_message(line)[:240])
    return {
        "unable_to_partial_parse": any(PARTIAL_PARSE_MISS in line for line in lines),
        "lines": lines[:20],
        "compute_logs_found": folder.exists(),
    }


def _dbt_message(line: str) -> str:
    """dbt's JSON log lines (dagster-dbt asks for --log-format json) as "HH:MM:SS message"."""
    try:
        event = json.loads(line)
        info = event.get("info", {})
        return f"{info.get('ts', '')[11:19]} {info.get('msg', '')}".strip()
    except (ValueError, AttributeError):
        return line


def other_runs(dagster_home: Path, ours: set[str]) -> list[dict]:
    """Runs this benchmark did not launch (schedules, sensors: the dbt automation sensor, with
    `--automation`): they share the machine (and the dbt parse lock) with the measured runs."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        out = []
        for r in instance.get_runs():
            if r.run_id in ours:
                continue
            record = instance.get_run_record_by_id(r.run_id)
            out.append(
                {
                    "run_id": r.run_id,
                    "job": r.job_name,
                    "status": r.status.value,
                    "partition": r.tags.get("dagster/partition"),
                    "sensor": r.tags.get("dagster/sensor_name"),
                    "start": record.start_time if record else None,
                    "end": record.end_time if record else None,
                }
            )
        return out


def overlapping(t: dict, others: list[dict], dequeued_at: float) -> list[str]:
    """Other runs executing while this run was between its dequeue and its first step."""
    lo, hi = dequeued_at, dequeued_at + t["dequeue_to_first_step"]
    return [
        o["run_id"][:8]
        for o in others
        if o["start"] is not None and o["start"] < hi and (o["end"] is None or o["end"] > lo)
    ]


def stop_database(env: dict[str, str]) -> dict:
    out = {}
    for action in ("stop", "remove"):  # remove: as root the data lives outside TAXI_HOME
        proc = subprocess.run(
            [str(BIN / "taxi-platform"), "db", action],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        out[action] = (proc.stdout + proc.stderr).strip()[-300:]
    return out


def machine() -> dict:
    import dagster

    from bench.run import git_commit

    return {
        "nproc": os.cpu_count(),
        "cpus_available": len(os.sched_getaffinity(0)),
        "python": sys.version.split()[0],
        "dagster": dagster.__version__,
        "git_commit": git_commit(),
        "load_average_start": os.getloadavg(),
    }


def run(args: argparse.Namespace) -> dict:
    from taxi_platform.datasets import GREEN, YELLOW
    from taxi_platform.sample.mirror import write_mirror
    from taxi_platform.sample.zones import write_mirror_zones

    root = Path(tempfile.mkdtemp(prefix="taxi-run-start-", dir=args.tmp))
    root.chmod(0o755)  # the embedded server runs as `nobody` when we are root
    home, mirror = root / "taxi_home", root / "mirror"
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True)
    shutil.copyfile(INSTANCE_TEMPLATE, dagster_home / "dagster.yaml")  # what `make dev` copies
    env = make_env(home, mirror)
    started_at = datetime.now(UTC)
    info = machine()
    print(f"run_start: working in {root}", flush=True)
    server = DevServer(env, root / "dagster-dev.log")
    database: dict = {}
    try:
        write_mirror(mirror, [YELLOW, GREEN], MONTHS, rows=args.rows, seed=3)
        write_mirror_zones(mirror)

        server.start()
        load_seconds = server.wait_until_loaded(dagster_home)
        print(f"run_start: dagster dev up, code location loaded in {load_seconds:.1f} s", flush=True)

        print("run_start: baseline (fresh python importing the code location) ...", flush=True)
        base = baseline(env, args.baseline_repeat)
        print(
            f"run_start:   import taxi_platform.definitions {base['import_definitions']['seconds']:.2f} s "
            f"(samples {base['import_definitions']['samples']}); with DAGSTER_IS_DEV_CLI=1 "
            f"{base['import_definitions_dev']['seconds']:.2f} s",
            flush=True,
        )
        sensor = None
        if not args.automation:  # its runs would overlap the measured ones
            from taxi_platform.automation.dbt_sensor import DBT_AUTOMATION_SENSOR_NAME

            sensor = {
                "name": DBT_AUTOMATION_SENSOR_NAME,
                "status": stop_sensor(server, DBT_AUTOMATION_SENSOR_NAME),
            }

        runs, ours = [], set()
        for item in plan(server):
            launched_at = time.time()
            run_id = launch(server, item["assets"], item["partition"])
            ours.add(run_id)
            status = wait_for_run(server, dagster_home, run_id)
            t = timings(dagster_home, run_id, launched_at)
            t.update(
                name=item["name"], assets=["/".join(p) for p in item["assets"]], partition=item["partition"]
            )
            if any(p[0] == "dbt" for p in item["assets"]):
                t["dbt"] = dbt_parse_findings(dagster_home, run_id)
            runs.append(t)
            print(
                f"run_start:   {item['name']:18s} {status:8s} dequeue->first step "
                f"{t['dequeue_to_first_step']:6.2f} s, ->RUN_START {t['dequeue_to_run_start']:6.2f} s"
                + (f", dbt full re-parse: {t['dbt']['unable_to_partial_parse']}" if "dbt" in t else ""),
                flush=True,
            )
        others = other_runs(dagster_home, ours)
        # the floor again, after the runs (the machine is shared: the faster counts)
        again = baseline(env, 1, only=("import_definitions",))["import_definitions"]["seconds"]
        base["import_definitions"]["after_runs"] = round(again, 3)
        base["import_definitions"]["seconds"] = floor = min(base["import_definitions"]["seconds"], again)
        for t in runs:
            t["ratio_to_baseline"] = round(t["dequeue_to_first_step"] / floor, 2)
            t["overlapping_runs"] = overlapping(t, others, t["dequeued_at"])
        worst = max(t["dequeue_to_first_step"] for t in runs)
        info["load_average_end"] = os.getloadavg()
        return {
            "schema_version": 1,
            "started_at": started_at.isoformat(timespec="seconds"),
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "args": {
                "rows": args.rows,
                "baseline_repeat": args.baseline_repeat,
                "automation": args.automation,
            },
            "stopped_sensor": sensor,
            "machine": info,
            "code_location_load_seconds": round(load_seconds, 2),
            "baseline": base,
            "runs": runs,
            "other_runs": others,
            "target": {
                "what": "dequeue -> first STEP_START of every run, seconds",
                "target": f"<= {TARGET_SECONDS:g}",
                "value": worst,
                "met": worst <= TARGET_SECONDS,
                "median": sorted(t["dequeue_to_first_step"] for t in runs)[len(runs) // 2],
            },
        }
    finally:
        try:
            server.stop()
        finally:
            try:
                database = stop_database(env)
                print(f"run_start: embedded PostgreSQL: {database}", flush=True)
            finally:
                if args.keep:
                    print(f"run_start: kept {root}", flush=True)
                else:
                    shutil.rmtree(root, ignore_errors=True)


def print_table(results: dict) -> None:
    print()
    floor = results["baseline"]["import_definitions"]["seconds"]
    b = results["baseline"]
    print(
        f"baseline: fresh `python -c 'import taxi_platform.definitions'` {floor:.2f} s "
        f"(python {b['python']['seconds']:.2f}, import dagster {b['import_dagster']['seconds']:.2f}, "
        f"+ dagster_dbt {b['import_dagster_dbt']['seconds']:.2f}; with DAGSTER_IS_DEV_CLI=1 "
        f"{b['import_definitions_dev']['seconds']:.2f})"
    )
    print(
        f"{'run':18} {'launch->deq':>11} {'deq->START':>10} {'deq->step':>9} {'x base':>6}  "
        f"{'worker up':>9} {'exec steps':>10}  steps (s)"
    )
    for t in results["runs"]:
        p = t["phases"]
        steps = ", ".join(
            f"{k.split('__')[-1] if '__' in k else k} {v['seconds']:.1f}"
            for k, v in t["steps"].items()
            if v["seconds"] is not None
        )
        dbt = t.get("dbt")
        note = (
            ""
            if dbt is None
            else ("  [dbt: full re-parse]" if dbt["unable_to_partial_parse"] else "  [dbt: partial parse]")
        )
        print(
            f"{t['name']:18} {t['launch_to_dequeued']:11.2f} {t['dequeue_to_run_start']:10.2f} "
            f"{t['dequeue_to_first_step']:9.2f} {t['ratio_to_baseline']:6.2f}  "
            f"{_f(p['worker_started']):>9} {_f(p['executing_steps']):>10}  {steps}{note}"
            + (
                f"  [overlapped by {len(t['overlapping_runs'])} other run(s)]"
                if t["overlapping_runs"]
                else ""
            )
        )
    tgt = results["target"]
    print()
    print(
        f"target {tgt['what']}: worst {tgt['value']:.2f} (median {tgt['median']:.2f}; "
        f"target {tgt['target']}): {'met' if tgt['met'] else 'NOT met'}"
    )
    if results["other_runs"]:
        print(
            f"other runs during the benchmark (not launched by it): "
            f"{[(r['job'], r['status']) for r in results['other_runs']]}"
        )


def _f(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run_start", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000, help="rows of each generated month")
    parser.add_argument(
        "--baseline-repeat", type=int, default=3, help="baseline samples (the fastest counts)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON results file")
    parser.add_argument("--tmp", default="/tmp", help="where the working folder is created")
    parser.add_argument("--keep", action="store_true", help="keep the working folder (logs, instance)")
    parser.add_argument(
        "--automation",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="leave the dbt automation sensor running (by default it is stopped: its "
        "runs would overlap the measured ones)",
    )
    args = parser.parse_args(argv)
    if min(args.rows, args.baseline_repeat) < 1:
        parser.error("--rows and --baseline-repeat must be positive")
    # A stopped benchmark (Ctrl-C, kill) still stops dagster dev and the server, removes its folder.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print_table(results)
    print(f"run_start: results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
