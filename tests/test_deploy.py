"""The deployment (docker-compose.yml, docker-compose.gcp.yml, Dockerfile, deploy/), checked where no
Docker engine runs: the compose files against the compose specification and against the files they
name; the init script, deploy/dagster.yaml and the compose commands run for real against the
session's embedded PostgreSQL."""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import psycopg2
import pytest
import yaml
from dagster_graphql import DagsterGraphQLClient

from taxi_platform.assets.policies import WAREHOUSE_POOL
from taxi_platform.assets.trip_keys import final_key, raw_file_key, staging_key
from taxi_platform.assets.trips import build_trip_assets
from taxi_platform.automation.dbt_sensor import DBT_RUN_TAG
from taxi_platform.datasets import GREEN
from taxi_platform.resources import build_resources
from taxi_platform.sample.generator import generate_month
from taxi_platform.settings import Settings
from taxi_platform.warehouse.embedded.binaries import bin_dir
from taxi_platform.warehouse.embedded.server import EmbeddedPostgres

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
COMPOSE_GCP = REPO / "docker-compose.gcp.yml"
COMPOSE_PGADMIN = REPO / "docker-compose.pgadmin.yml"
ENV_EXAMPLE = REPO / ".env.example"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
DEPLOY_INSTANCE = REPO / "deploy" / "dagster.yaml"
DEPLOY_WORKSPACE = REPO / "deploy" / "workspace.yaml"
INIT_SCRIPT = REPO / "deploy" / "postgres" / "init-databases.sh"
BIN = Path(sys.executable).parent

CODE_SERVICE, WEBSERVER_SERVICE, DAEMON_SERVICE = "taxi-code", "dagster-webserver", "dagster-daemon"
DAGSTER_SERVICES = (CODE_SERVICE, WEBSERVER_SERVICE, DAEMON_SERVICE)
STORAGE_ENV = (
    "DAGSTER_PG_HOST",
    "DAGSTER_PG_PORT",
    "DAGSTER_PG_DB",
    "DAGSTER_PG_USERNAME",
    "DAGSTER_PG_PASSWORD",
)
# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, ${VAR?message}, $VAR; `$$` escapes.
_VARIABLE = re.compile(
    r"(?<!\$)\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?[^}]*\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)
_SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|CREDENTIAL|_KEY$|^KEY$", re.I)


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f".env.example: {line!r} is not NAME=value"
            values[name.strip()] = value.strip()
    return values


def strings(node, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string in a YAML document with its path (keys included, for `environment` maps)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from strings(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from strings(value, f"{path}[{i}]")
    elif isinstance(node, str):
        yield path, node


def variables(doc: dict) -> dict[str, bool]:
    """The variables a compose file interpolates -> whether every use carries a `-` default."""
    found: dict[str, bool] = {}
    for _, text in strings(doc):
        for m in _VARIABLE.finditer(text):
            name = m.group("braced") or m.group("bare")
            has_default = bool(m.group("op")) and m.group("op").endswith("-")
            found[name] = found.get(name, True) and has_default
    return found


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def merge(base, override):
    """Compose's merge of an override file: mappings merge, sequences append, scalars replace."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(override, list):
        return base + [v for v in override if v not in base]
    return copy.deepcopy(override)


def compose_problems(doc: dict, root: Path, documented: set[str]) -> list[str]:
    """What would stop `docker compose up` or leak a secret, found without a Docker engine."""
    problems = []
    services = doc.get("services") or {}
    declared_volumes = set(doc.get("volumes") or {})
    declared_secrets = set(doc.get("secrets") or {})
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        for dep, cond in deps.items() if isinstance(deps, dict) else ((d, {}) for d in deps):
            if dep not in services:
                problems.append(f"{name}: depends_on {dep}, which is not a service")
            elif "healthcheck" in services[dep] and (cond or {}).get("condition") != "service_healthy":
                problems.append(f"{name}: depends_on {dep} without condition: service_healthy")
        for volume in svc.get("volumes") or []:
            source = volume.get("source", "") if isinstance(volume, dict) else volume.split(":")[0]
            kind = (
                volume.get("type", "volume")
                if isinstance(volume, dict)
                else ("bind" if source.startswith((".", "/", "~")) else "volume")
            )
            if kind == "bind" and not (root / source).exists():
                problems.append(f"{name}: bind mount {source} does not exist")
            elif kind == "volume" and source and source not in declared_volumes:
                problems.append(f"{name}: volume {source} is not declared under volumes:")
        env_files = svc.get("env_file") or []
        for env_file in [env_files] if isinstance(env_files, (str, dict)) else env_files:
            path = env_file if isinstance(env_file, str) else env_file["path"]
            required = isinstance(env_file, str) or env_file.get("required", True)
            if required and not (root / path).is_file():
                problems.append(f"{name}: env_file {path} does not exist")
        build = svc.get("build")
        if build is not None:
            context = root / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            if not context.is_dir():
                problems.append(f"{name}: build context {context} does not exist")
            elif not (context / dockerfile).is_file():
                problems.append(f"{name}: Dockerfile {context / dockerfile} does not exist")
        image = svc.get("image")
        if image and not re.search(r":[\w.${}:-]+$", image) or (image or "").endswith(":latest"):
            problems.append(f"{name}: image {image} is not pinned to a version tag")
        for secret in svc.get("secrets") or []:
            source = secret if isinstance(secret, str) else secret["source"]
            if source not in declared_secrets:
                problems.append(f"{name}: secret {source} is not declared under secrets:")
        for key, value in environment(svc).items():
            if _SECRET_NAME.search(key) and not (value.startswith("${") or value.startswith("/run/secrets/")):
                problems.append(f"{name}: {key} holds a literal value; take it from .env")
    for path, text in strings(doc):
        for m in re.finditer(r"://[^:/@\s]+:([^@\s]*)@", text):
            if not m.group(1).startswith("${"):
                problems.append(f"{path}: a URL with a literal password")
    for name, has_default in variables(doc).items():
        if name not in documented and not has_default:
            problems.append(f"${{{name}}} has no default and is not in .env.example")
    return problems


# --- the compose files ---------------------------------------------------------------------------


def check_jsonschema(*files: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", *map(str, files)],
        capture_output=True,
        text=True,
    )


def test_compose_files_follow_the_compose_specification(tmp_path: Path):
    result = check_jsonschema(COMPOSE, COMPOSE_GCP, COMPOSE_PGADMIN)
    assert result.returncode == 0, result.stdout + result.stderr
    # ... and so does what compose runs with an override: merged onto the base.
    for override in (COMPOSE_GCP, COMPOSE_PGADMIN):
        merged = tmp_path / f"merged-{override.stem}.yml"
        merged.write_text(yaml.safe_dump(merge(load_yaml(COMPOSE), load_yaml(override))))
        result = check_jsonschema(merged)
        assert result.returncode == 0, result.stdout + result.stderr
    # The validator does reject what compose rejects (here a misspelt key).
    broken = tmp_path / "broken.yml"
    broken.write_text(COMPOSE.read_text().replace("restart: unless-stopped", "restarts: no", 1))
    assert check_jsonschema(broken).returncode != 0


@pytest.mark.parametrize(
    "files", [[COMPOSE], [COMPOSE, COMPOSE_GCP], [COMPOSE, COMPOSE_PGADMIN]], ids=["base", "gcp", "pgadmin"]
)
def test_compose_names_only_things_that_exist(files: list[Path]):
    doc = load_yaml(files[0])
    for override in files[1:]:
        doc = merge(doc, load_yaml(override))
    assert compose_problems(doc, REPO, set(env_example())) == []


def test_compose_problems_are_found():
    """Each rule of compose_problems fires on a compose file that breaks it."""
    broken = {
        "services": {
            "db": {
                "image": "postgres",
                "healthcheck": {"test": ["CMD", "true"]},
                "environment": {"POSTGRES_PASSWORD": "hunter2"},
            },
            "app": {
                "build": {"context": "no_such_dir"},
                "image": "app:latest",
                "depends_on": {"db": {"condition": "service_started"}, "cache": {}},
                "volumes": ["undeclared:/data", "./no_such_file:/x"],
                "env_file": ["no_such.env"],
                "secrets": ["undeclared_secret"],
                "environment": {"URL": "postgresql://u:literal@db/x", "X": "${NOT_DOCUMENTED}"},
            },
        },
    }
    problems = "\n".join(compose_problems(broken, REPO, documented=set()))
    for expected in (
        "depends_on cache, which is not a service",
        "depends_on db without condition: service_healthy",
        "volume undeclared is not declared",
        "bind mount ./no_such_file does not exist",
        "env_file no_such.env does not exist",
        "build context",
        "image postgres is not pinned",
        "image app:latest is not pinned",
        "secret undeclared_secret is not declared",
        "POSTGRES_PASSWORD holds a literal value",
        "a URL with a literal password",
        "${NOT_DOCUMENTED} has no default",
    ):
        assert expected in problems, f"{expected!r} not reported in:\n{problems}"


def test_env_example_documents_every_variable_and_holds_no_secret():
    documented = env_example()
    used = (
        variables(load_yaml(COMPOSE))
        | variables(load_yaml(COMPOSE_GCP))
        | variables(load_yaml(COMPOSE_PGADMIN))
    )
    assert sorted(set(documented) - set(used)) == [], "documented in .env.example but used nowhere"
    assert sorted(set(used) - set(documented)) == [], "used by compose but missing from .env.example"
    secrets = {k: v for k, v in documented.items() if _SECRET_NAME.search(k)}
    assert secrets and all(v == "" for v in secrets.values()), f".env.example holds secrets: {secrets}"
    # Compose stops with a message when a password is left empty, instead of starting without one.
    text = COMPOSE.read_text() + COMPOSE_GCP.read_text() + COMPOSE_PGADMIN.read_text()
    for name in secrets:
        assert f"${{{name}:?" in text, f"{name} has no :? guard in the compose files"


def test_services_are_wired_as_documented():
    doc = load_yaml(COMPOSE)
    services = doc["services"]
    assert set(services) == {"postgres", *DAGSTER_SERVICES}
    for name, svc in services.items():
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"

    postgres = services["postgres"]
    image = re.fullmatch(r"postgres:(\d+)(\.\d+)*(-alpine)?", postgres["image"])
    assert image is not None, postgres["image"]
    major = int(image.group(1))
    assert major >= 17
    # 18+ images keep their data under /var/lib/postgresql/<major>/docker: mount the parent.
    data_mount = "/var/lib/postgresql" if major >= 18 else "/var/lib/postgresql/data"
    assert f"postgres_data:{data_mount}" in postgres["volumes"]
    assert (
        "./deploy/postgres/init-databases.sh:/docker-entrypoint-initdb.d/10-init-databases.sh:ro"
        in postgres["volumes"]
    )
    assert "pg_isready -h 127.0.0.1" in postgres["healthcheck"]["test"][1]

    code, web, daemon = (services[s] for s in DAGSTER_SERVICES)
    assert code["build"] == {"context": ".", "dockerfile": "Dockerfile"}
    assert web["image"] == daemon["image"] == code["image"], "one image, one set of Dagster versions"
    assert code["command"][:3] == ["dagster", "code-server", "start"]
    assert code["healthcheck"]["test"][1:4] == ["dagster", "api", "grpc-health-check"]
    assert web["command"][0] == "dagster-webserver" and "/server_info" in web["healthcheck"]["test"][-1]
    assert daemon["command"][:2] == ["dagster-daemon", "run"]
    for svc in (web, daemon):
        assert svc["command"][svc["command"].index("-w") + 1] == "deploy/workspace.yaml"
    # Every process that opens the instance reaches the same Dagster storage.
    storage = [{k: environment(s).get(k) for k in STORAGE_ENV} for s in (code, web, daemon)]
    assert storage[0] == storage[1] == storage[2] and storage[0]["DAGSTER_PG_HOST"] == "postgres"
    assert environment(postgres)["DAGSTER_PG_DB"] == storage[0]["DAGSTER_PG_DB"]
    # Only the code server runs project code: it alone gets the warehouse and the lake.
    url = urlsplit(_VARIABLE.sub("v", environment(code)["TAXI_POSTGRES_URL"]))
    assert url.hostname == "postgres" and url.port == 5432
    assert "TAXI_POSTGRES_URL" not in environment(web) and "TAXI_POSTGRES_URL" not in environment(daemon)
    assert any(v.endswith(":/var/lib/taxi_platform") for v in code["volumes"])
    # Run logs written by the code server's runs are read by the UI.
    for svc in (code, web, daemon):
        assert "dagster_storage:/opt/dagster/dagster_home/storage" in svc["volumes"]
    # The UI has no login: published on loopback only.
    assert all(p.startswith("127.0.0.1:") for s in services.values() for p in s.get("ports", []))


def test_pgadmin_override_lists_the_warehouse_on_loopback():
    pgadmin = load_yaml(COMPOSE_PGADMIN)["services"]["pgadmin"]
    assert re.fullmatch(r"dpage/pgadmin4:\d+\.\d+", pgadmin["image"])
    assert all(p.startswith("127.0.0.1:") for p in pgadmin["ports"])
    assert "./deploy/pgadmin/servers.json:/pgadmin4/servers.json:ro" in pgadmin["volumes"]
    servers = json.loads((REPO / "deploy" / "pgadmin" / "servers.json").read_text())["Servers"]
    base = load_yaml(COMPOSE)["services"]
    assert [(v["Host"], v["Port"], v["MaintenanceDB"], v["Username"]) for v in servers.values()] == [
        ("postgres", 5432, env_example()["TAXI_DB_NAME"], env_example()["TAXI_DB_USER"])
    ]
    assert "postgres" in base and pgadmin["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_gcp_override_sets_the_target_and_mounts_the_key():
    base, gcp = load_yaml(COMPOSE), load_yaml(COMPOSE_GCP)
    assert set(gcp["services"]) <= set(base["services"]), "the override only extends base services"
    env = environment(gcp["services"][CODE_SERVICE])
    assert env["TAXI_TARGET"] == "gcp"
    assert {"TAXI_GCP_PROJECT", "TAXI_GCS_BUCKET", "TAXI_BQ_DATASET", "TAXI_GCP_LOCATION"} <= set(env)
    (secret,) = gcp["services"][CODE_SERVICE]["secrets"]
    assert env["GOOGLE_APPLICATION_CREDENTIALS"] == f"/run/secrets/{secret}"
    assert gcp["secrets"][secret]["file"].startswith("${TAXI_GCP_CREDENTIALS_FILE:?")


# --- the image ------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    rows = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(row.split(None, 1)[0].upper(), row.split(None, 1)[1]) for row in rows]


def test_dockerfile_installs_like_make_install():
    steps = dockerfile_instructions()
    (base,) = [args for instr, args in steps if instr == "FROM"]
    assert re.fullmatch(r"python:3\.1[12]-slim", base), "a pinned Python inside requires-python"
    runs = " && ".join(args for instr, args in steps if instr == "RUN")
    pip_installs = re.findall(r"pip install [^&;]*", runs)
    assert pip_installs
    for command in pip_installs:
        assert "-c constraints.txt" in command or "--upgrade pip" in command, command
    # The project: exactly the Makefile's command (README / CI `make install`) without the dev extra.
    (make_line,) = [
        line.strip()
        for line in (REPO / "Makefile").read_text().splitlines()
        if "pip install" in line and "-c constraints.txt" in line
    ]
    assert "'.[dev]'" in make_line
    expected = make_line.replace("$(BIN)/", "").replace("'.[dev]'", ".")
    assert expected in runs, f"the Dockerfile does not run {expected!r}"
    copied = " ".join(args for instr, args in steps if instr == "COPY")
    assert "constraints.txt" in copied and "pyproject.toml" in copied


def test_dockerfile_prepares_the_dbt_manifest_and_the_instance():
    steps = dockerfile_instructions()
    copies = [args.split() for instr, args in steps if instr == "COPY"]
    assert ["dbt_project", "./dbt_project"] in copies
    runs = [args for instr, args in steps if instr == "RUN"]
    prepare = "dagster-dbt project prepare-and-package --file taxi_platform/dbt_project.py"
    parse = [r for r in runs if prepare in r]
    assert parse and "test -f dbt_project/target/manifest.json" in parse[0]
    # The build stops with a message, before dbt runs, when the dbt project is missing.
    guard = next(i for i, r in enumerate(runs) if "test -f dbt_project/dbt_project.yml" in r)
    assert guard < runs.index(parse[0]) and "exit 1" in runs[guard]
    env = " ".join(args for instr, args in steps if instr == "ENV")
    assert "DAGSTER_HOME=/opt/dagster/dagster_home" in env and "TAXI_HOME=/var/lib/taxi_platform" in env
    assert any('cp deploy/dagster.yaml "$DAGSTER_HOME/dagster.yaml"' in r for r in runs)
    assert any(instr == "USER" and args != "root" for instr, args in steps), "runs unprivileged"
    # The default command is the compose code server's.
    (cmd,) = [args for instr, args in steps if instr == "CMD"]
    assert yaml.safe_load(cmd) == load_yaml(COMPOSE)["services"][CODE_SERVICE]["command"]


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern also matches a path's parents."""
    candidates = [path, *(str(p) for p in Path(path).parents if str(p) != ".")]
    ignored = False
    for pattern in patterns:
        negate, pattern = pattern.startswith("!"), pattern.lstrip("!").rstrip("/")
        if any(
            fnmatch.fnmatch(c, pattern) or fnmatch.fnmatch(c, pattern.replace("**/", "")) for c in candidates
        ):
            ignored = not negate
    return ignored


def test_build_context_holds_what_the_dockerfile_copies_and_no_secrets():
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for instr, args in dockerfile_instructions():
        if instr == "COPY":
            *sources, _ = args.split()
            for source in sources:
                assert (REPO / source).exists(), f"COPY {source}: not in the repository"
                assert not dockerignored(source, patterns), f"COPY {source}: excluded by .dockerignore"
    for kept_out in (
        ".env",
        ".env.local",
        ".venv/bin/python",
        ".git/config",
        ".taxi_home/lake",
        "secrets/key.json",
        "dbt_project/target/manifest.json",
        "taxi_platform/__pycache__/x.pyc",
    ):
        assert dockerignored(kept_out, patterns), f"{kept_out} would be sent to the image build"
    assert not dockerignored("deploy/dagster.yaml", patterns)


def test_workspaces_point_at_the_code_server():
    (location,) = load_yaml(DEPLOY_WORKSPACE)["load_from"]
    code = load_yaml(COMPOSE)["services"][CODE_SERVICE]
    command = code["command"]
    assert location["grpc_server"] == {
        "host": CODE_SERVICE,
        "port": int(command[command.index("-p") + 1]),
        "location_name": command[command.index("--location-name") + 1],
    }
    assert str(location["grpc_server"]["port"]) in code["expose"]
    # Local use keeps loading the module in-process.
    (local,) = load_yaml(REPO / "workspace.yaml")["load_from"]
    assert local["python_module"]["module_name"] == command[command.index("-m") + 1]


def test_local_and_deploy_instances_share_queue_and_concurrency():
    """`make dev`'s instance and the deployment's queue runs under the same limits: one source of
    truth for what the code relies on (dbt runs one at a time, the warehouse pool's default)."""
    local = load_yaml(REPO / "taxi_platform" / "instance" / "dagster.yaml")
    deploy = load_yaml(DEPLOY_INSTANCE)
    # The deployment adds retries for a code server restarting after a deploy; the queue is the same.
    for key in ("module", "class"):
        assert local["run_coordinator"][key] == deploy["run_coordinator"][key]
    assert local["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert local["concurrency"] == deploy["concurrency"]
    assert deploy["concurrency"]["runs"]["max_concurrent_runs"] == 4
    assert deploy["concurrency"]["pools"] == {"default_limit": 2, "granularity": "op"}
    # Every run tag the automation relies on for a limit is limited in both instances.
    for instance in (local, deploy):
        tag_limits = instance["concurrency"]["runs"]["tag_concurrency_limits"]
        assert {limit["key"]: limit["limit"] for limit in tag_limits} == {DBT_RUN_TAG: 1}


# --- for real, against the embedded PostgreSQL -----------------------------------------------------


@dataclass
class DeployDatabases:
    """What deploy/postgres/init-databases.sh created, with the settings compose would pass."""

    host: str
    port: int
    taxi_db: str
    taxi_user: str
    taxi_password: str
    dagster_db: str
    dagster_user: str
    dagster_password: str

    @property
    def taxi_url(self) -> str:
        return f"postgresql://{self.taxi_user}:{self.taxi_password}@{self.host}:{self.port}/{self.taxi_db}"

    @property
    def dagster_url(self) -> str:
        return (
            f"postgresql://{self.dagster_user}:{self.dagster_password}@{self.host}:{self.port}/"
            f"{self.dagster_db}"
        )

    def storage_env(self) -> dict[str, str]:
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_DB": self.dagster_db,
            "DAGSTER_PG_USERNAME": self.dagster_user,
            "DAGSTER_PG_PASSWORD": self.dagster_password,
        }


def query(url: str, sql: str, params=()) -> list[tuple]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


def run_status(dbs: DeployDatabases, run_id: str) -> str | None:
    rows = query(dbs.dagster_url, "SELECT status FROM runs WHERE run_id = %s", (run_id,))
    return rows[0][0] if rows else None


@pytest.fixture
def deploy_databases(embedded_pg: EmbeddedPostgres) -> DeployDatabases:
    """Runs the init script as the postgres image would (as the superuser, with compose's env)."""
    su = urlsplit(embedded_pg.url())
    assert (
        su.hostname and su.port and su.username and su.password is not None
    )  # the server's URL has them all
    suffix = uuid.uuid4().hex[:8]
    dbs = DeployDatabases(
        host=su.hostname,
        port=su.port,
        taxi_db=f"taxi_{suffix}",
        taxi_user=f"taxi_{suffix}",
        taxi_password=uuid.uuid4().hex,
        dagster_db=f"dagster_{suffix}",
        dagster_user=f"dagster_{suffix}",
        dagster_password=uuid.uuid4().hex,
    )
    env = {
        "PATH": f"{bin_dir()}:{os.environ['PATH']}",
        "PGHOST": su.hostname,
        "PGPORT": str(su.port),
        "PGPASSWORD": su.password,
        "POSTGRES_USER": su.username,
        "POSTGRES_DB": "postgres",
        "TAXI_DB_NAME": dbs.taxi_db,
        "TAXI_DB_USER": dbs.taxi_user,
        "TAXI_DB_PASSWORD": dbs.taxi_password,
        **{k: v for k, v in dbs.storage_env().items() if k not in ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT")},
    }
    result = subprocess.run([str(INIT_SCRIPT)], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return dbs


def test_init_script_creates_two_separate_databases(deploy_databases: DeployDatabases):
    dbs = deploy_databases
    assert query(dbs.taxi_url, "SELECT current_user, current_database()") == [(dbs.taxi_user, dbs.taxi_db)]
    assert query(dbs.dagster_url, "SELECT current_user, current_database()") == [
        (dbs.dagster_user, dbs.dagster_db)
    ]
    # Neither role can open the other's database.
    for url, other_db in ((dbs.taxi_url, dbs.dagster_db), (dbs.dagster_url, dbs.taxi_db)):
        with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
            psycopg2.connect(url.rsplit("/", 1)[0] + "/" + other_db).close()
    # A password left empty stops the script, naming the variable.
    result = subprocess.run(
        [str(INIT_SCRIPT)],
        env={"PATH": os.environ["PATH"], "TAXI_DB_NAME": "x"},
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "TAXI_DB_USER is not set" in result.stderr


@pytest.fixture
def deploy_home(tmp_path: Path, deploy_databases: DeployDatabases, monkeypatch) -> Path:
    """A DAGSTER_HOME laid out as the image lays it out, with the compose storage environment."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY_INSTANCE, home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    for key, value in deploy_databases.storage_env().items():
        monkeypatch.setenv(key, value)
    return home


def test_deploy_instance_stores_a_materialization_in_postgres(
    deploy_home: Path, tmp_path: Path, deploy_databases: DeployDatabases
):
    dbs = deploy_databases
    config = load_yaml(DEPLOY_INSTANCE)
    mirror = tmp_path / "mirror"
    month = date(2019, 2, 1)
    generate_month(GREEN, month, mirror / GREEN.release_tag / GREEN.file_name(month), rows=2_000, seed=5)
    # The compose defaults: the platform's default schemas, in the warehouse's own database.
    settings = Settings(
        source="course", home=tmp_path / "taxi_home", source_url=mirror.as_uri(), postgres_url=dbs.taxi_url
    )

    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert type(instance.run_launcher).__name__ == "DefaultRunLauncher"
        concurrency = instance.get_concurrency_config()
        configured = config["concurrency"]
        assert (
            concurrency.run_queue_config is not None and concurrency.pool_config.pool_granularity is not None
        )
        assert concurrency.run_queue_config.max_concurrent_runs == configured["runs"]["max_concurrent_runs"]
        assert concurrency.pool_config.default_pool_limit == configured["pools"]["default_limit"] == 2
        assert concurrency.pool_config.pool_granularity.value == "op"
        assert instance.run_monitoring_enabled and instance.run_monitoring_max_resume_run_attempts == 0
        assert not instance.telemetry_enabled

        assets = build_trip_assets(
            GREEN, warehouse_kind="postgres", lake_kind="file", min_in_month_share=settings.min_in_month_share
        )
        result = dg.materialize(
            assets, partition_key=f"{month:%Y-%m-01}", instance=instance, resources=build_resources(settings)
        )
        assert result.success

        # The warehouse steps took slots of the pool, which got the configured default limit,
        # and gave them back.
        limits = {p.name: p for p in instance.event_log_storage.get_pool_limits()}
        assert limits[WAREHOUSE_POOL].limit == 2 and limits[WAREHOUSE_POOL].from_default
        info = instance.event_log_storage.get_concurrency_info(WAREHOUSE_POOL)
        assert info.slot_count == 2 and info.active_slot_count == 0

    # The run and its events are rows in the Dagster database ...
    assert run_status(dbs, result.run_id) == "SUCCESS"
    materialized = query(
        dbs.dagster_url,
        "SELECT asset_key FROM event_logs WHERE run_id = %s AND "
        "dagster_event_type = 'ASSET_MATERIALIZATION' ORDER BY id",
        (result.run_id,),
    )
    assert [r[0] for r in materialized] == [
        k.to_string() for k in (raw_file_key(GREEN), staging_key(GREEN), final_key(GREEN))
    ]
    checks = query(
        dbs.dagster_url,
        "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_CHECK_EVALUATION'",
        (result.run_id,),
    )
    assert checks[0][0] >= 3
    # ... and the trips are in the warehouse database, which holds no Dagster tables.
    rows = query(dbs.taxi_url, "SELECT count(*) FROM taxi.green_tripdata")[0][0]
    (final,) = [
        e.step_materialization_data.materialization
        for e in result.get_asset_materialization_events()
        if e.step_materialization_data.materialization.asset_key == final_key(GREEN)
    ]
    assert rows > 0 and rows == final.metadata["dagster/row_count"].value
    assert query(dbs.taxi_url, "SELECT to_regclass('public.runs')") == [(None,)]


# --- the compose stack's commands, without containers ----------------------------------------------


def interpolate(text: str, values: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?message}, as `docker compose` resolves them."""

    def resolve(m: re.Match) -> str:
        name = m.group("braced") or m.group("bare")
        rest = m.group(0)[2 + len(name) : -1] if m.group("braced") else ""
        value = values.get(name, "")
        if rest.startswith(":?") and not value:
            raise AssertionError(f"compose would stop: {rest[2:]}")
        return value or (rest[2:] if rest.startswith(":-") else "")

    return _VARIABLE.sub(resolve, text).replace("$$", "$")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_option(command: list[str], option: str, value: str) -> list[str]:
    command = list(command)
    command[command.index(option) + 1] = value
    return command


@pytest.mark.slow
def test_compose_commands_run_a_queued_materialization(
    deploy_home: Path, deploy_databases: DeployDatabases, tmp_path: Path
):
    """The three Dagster services started with their compose commands, environments and healthchecks
    (the network replaced by 127.0.0.1): a run submitted in the UI's way waits in the queue, the
    daemon hands it to the code server, and the month lands in the warehouse."""
    dbs = deploy_databases
    compose = load_yaml(COMPOSE)["services"]
    month = date(2019, 3, 1)
    mirror = tmp_path / "mirror"
    generate_month(GREEN, month, mirror / GREEN.release_tag / GREEN.file_name(month), rows=2_000, seed=9)
    # What .env would hold; everything else takes the compose file's defaults.
    dot_env = {
        "TAXI_DB_NAME": dbs.taxi_db,
        "TAXI_DB_USER": dbs.taxi_user,
        "TAXI_DB_PASSWORD": dbs.taxi_password,
        "DAGSTER_PG_DB": dbs.dagster_db,
        "DAGSTER_PG_USERNAME": dbs.dagster_user,
        "DAGSTER_PG_PASSWORD": dbs.dagster_password,
        "TAXI_SOURCE": "course",
        "TAXI_SOURCE_URL": mirror.as_uri(),
    }
    network = {"@postgres:5432/": f"@{dbs.host}:{dbs.port}/"}
    code_port, web_port = free_port(), free_port()
    # The image's WORKDIR, with the compose workspace pointed at this machine's code server.
    workdir = tmp_path / "workdir"
    (workdir / "deploy").mkdir(parents=True)
    workspace = load_yaml(DEPLOY_WORKSPACE)
    workspace["load_from"][0]["grpc_server"].update(host="127.0.0.1", port=code_port)
    (workdir / "deploy" / "workspace.yaml").write_text(yaml.safe_dump(workspace))

    def service_env(name: str) -> dict[str, str]:
        env = {k: interpolate(v, dot_env) for k, v in environment(compose[name]).items()}
        for old, new in network.items():
            env = {k: v.replace(old, new) for k, v in env.items()}
        env.update(DAGSTER_PG_HOST=dbs.host, DAGSTER_PG_PORT=str(dbs.port))  # compose: postgres:5432
        return {
            **os.environ,
            "PATH": f"{BIN}:{os.environ['PATH']}",
            "DAGSTER_HOME": str(deploy_home),
            "TAXI_HOME": str(tmp_path / "taxi_home"),
            **env,
        }

    def listening_on(name: str, port: int) -> list[str]:
        return with_option(with_option(compose[name]["command"], "-h", "127.0.0.1"), "-p", str(port))

    commands = {
        CODE_SERVICE: listening_on(CODE_SERVICE, code_port),
        WEBSERVER_SERVICE: listening_on(WEBSERVER_SERVICE, web_port),
        DAEMON_SERVICE: compose[DAEMON_SERVICE]["command"],
    }
    healthchecks = {
        CODE_SERVICE: with_option(compose[CODE_SERVICE]["healthcheck"]["test"][1:], "-p", str(code_port)),
        WEBSERVER_SERVICE: [
            c.replace("localhost:3000", f"127.0.0.1:{web_port}")
            for c in compose[WEBSERVER_SERVICE]["healthcheck"]["test"][1:]
        ],
        DAEMON_SERVICE: compose[DAEMON_SERVICE]["healthcheck"]["test"][1:],
    }
    processes: dict[str, subprocess.Popen] = {}

    def logs() -> str:
        return "\n".join(
            f"--- {name} ---\n{(tmp_path / f'{name}.log').read_text()[-3000:]}" for name in processes
        )

    def wait_healthy(name: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert processes[name].poll() is None, f"{name} exited\n{logs()}"
            check = subprocess.run(
                healthchecks[name], env=service_env(name), cwd=workdir, capture_output=True, text=True
            )
            if check.returncode == 0:
                return
            assert time.monotonic() < deadline, f"{name} not healthy: {check.stdout}{check.stderr}\n{logs()}"
            time.sleep(2)

    try:
        # In compose's depends_on order: the code server, then the UI and the daemon.
        for name in DAGSTER_SERVICES:
            with open(tmp_path / f"{name}.log", "w") as log:
                processes[name] = subprocess.Popen(
                    commands[name],
                    env=service_env(name),
                    cwd=workdir,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            if name == CODE_SERVICE:
                wait_healthy(name)
        wait_healthy(WEBSERVER_SERVICE)
        wait_healthy(DAEMON_SERVICE)

        client = DagsterGraphQLClient("127.0.0.1", port_number=web_port)
        run_id = client.submit_job_execution(
            "__ASSET_JOB",
            repository_location_name="taxi_platform",
            asset_selection=[raw_file_key(GREEN), staging_key(GREEN), final_key(GREEN)],
            tags={"dagster/partition": f"{month:%Y-%m-01}"},
        )
        deadline = time.monotonic() + 300
        while (status := run_status(dbs, run_id)) not in ("SUCCESS", "FAILURE", "CANCELED"):
            assert time.monotonic() < deadline, f"run {run_id} still {status}\n{logs()}"
            time.sleep(2)
        assert status == "SUCCESS", logs()
        events = {
            r[0]
            for r in query(
                dbs.dagster_url,
                "SELECT DISTINCT dagster_event_type FROM event_logs WHERE run_id = %s",
                (run_id,),
            )
        }
        # It went through the queue (the coordinator of deploy/dagster.yaml), not straight to a worker.
        E = dg.DagsterEventType
        assert {
            e.value for e in (E.RUN_ENQUEUED, E.RUN_STARTING, E.ASSET_MATERIALIZATION, E.RUN_SUCCESS)
        } <= events
        assert query(dbs.taxi_url, "SELECT min(filename), count(*) > 0 FROM taxi.green_tripdata") == [
            (GREEN.file_name(month), True)
        ]
    finally:
        for process in processes.values():  # only the processes this test started, by their group
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            try:  # whatever is left of the group: the code server's gRPC child, a run worker
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
