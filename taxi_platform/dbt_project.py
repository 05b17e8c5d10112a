"""The dbt project as dagster-dbt's `DbtProject`, and the preparation of its manifest.

`dbt_project` below is what dagster-dbt's standard command prepares:
`dagster-dbt project prepare-and-package --file taxi_platform/dbt_project.py` (dbt deps when the
project has packages, then `dbt parse` into target/), run by `make install` / `make dbt-prepare`
and the Dockerfile. The definitions load target/manifest.json and never parse at import time,
except under `dagster dev` (`load_dbt_project`): there the same preparation runs at load when a
file of the dbt project changed since the last one, so model edits show up and run workers do not
parse again.
"""

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dagster_dbt import DagsterDbtProjectPreparer, DbtProject

from taxi_platform.resources import dbt_executable
from taxi_platform.settings import dbt_project_dir_from_env


class DbtManifestMissing(FileNotFoundError):
    pass


def taxi_dbt_project(project_dir: Path) -> DbtProject:
    """The project at `project_dir`, its profiles.yml beside it. No `packaged_project_dir`: the
    package is installed editable with dbt_project/ beside it (the image too), and a packaged copy
    would shadow the project's edits outside `dagster dev`."""
    return DbtProject(project_dir=project_dir, profiles_dir=project_dir)


# What `dagster-dbt project prepare-and-package --file` finds and prepares (TAXI_DBT_PROJECT_DIR).
# Only TAXI_DBT_PROJECT_DIR is read: preparing the project must not depend on the other settings.
dbt_project = taxi_dbt_project(dbt_project_dir_from_env())


def load_dbt_project(project_dir: Path) -> DbtProject:
    """The project with a loadable manifest: prepared again first under `dagster dev` if a file
    of the project changed (dagster-dbt's `prepare_if_dev`, done only when needed)."""
    project = taxi_dbt_project(project_dir)
    if DagsterDbtProjectPreparer().using_dagster_dev() and not manifest_is_current(project):
        reparse_manifest(project)
    if not project.manifest_path.exists():
        raise DbtManifestMissing(
            f"no dbt manifest at {project.manifest_path}: run `make install` or `make dbt-prepare` "
            "(dagster-dbt project prepare-and-package --file taxi_platform/dbt_project.py) first"
        )
    return project


SOURCES_STAMP = "manifest.sources"


def dbt_sources_fingerprint(project: DbtProject) -> str:
    """Name, size and modification time of every file of the dbt project outside its target."""
    root = Path(project.project_dir)
    skip = {str(project.target_path), "logs", "dbt_packages"}
    entries = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        # Hidden files (.user.yml, which dbt writes; editors' swap files) and backups do not count.
        hidden = any(part.startswith(".") for part in relative.parts) or relative.name.endswith("~")
        if relative.parts[0] in skip or hidden or not path.is_file():
            continue
        stat = path.stat()
        entries.append(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()


def manifest_is_current(project: DbtProject) -> bool:
    """Whether the manifest was parsed from the project's files as they are now (under `dagster
    dev` every run worker loads the code location: a parse each time cost runs 5-30 s to start)."""
    stamp = Path(project.project_dir) / project.target_path / SOURCES_STAMP
    try:
        return project.manifest_path.exists() and stamp.read_text() == dbt_sources_fingerprint(project)
    except OSError:
        return False


def reparse_manifest(project: DbtProject, force: bool = False) -> None:
    """dagster-dbt's preparation (`DbtProjectPreparer.prepare`: `dbt parse` into the project's
    target), one process at a time: under `dagster dev` the code server, the daemon and every run
    worker load the code location. A process that waited finds the manifest current and does not
    parse again; one that finds it stale waits for the lock before reading it, so none reads a
    half-written manifest. The stamp of the files as they were before the parse is written on
    success only: an edit meanwhile, or a failed parse, makes the next load parse again."""
    target = Path(project.project_dir) / project.target_path
    target.mkdir(parents=True, exist_ok=True)
    with open(target / ".parse.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not force and manifest_is_current(project):  # another process parsed it meanwhile
            return
        fingerprint = dbt_sources_fingerprint(project)
        with _dbt_on_path():
            project.preparer.prepare(project)
        (target / SOURCES_STAMP).write_text(fingerprint)


@contextmanager
def _dbt_on_path() -> Iterator[None]:
    """dagster-dbt's preparation runs a bare `dbt` from PATH, which `make dev` and `.venv/bin/pytest`
    (the venv not activated) do not have: the dbt installed beside this Python goes first."""
    saved = os.environ.get("PATH", "")
    beside = Path(dbt_executable()).parent
    if beside != Path("."):
        os.environ["PATH"] = f"{beside}{os.pathsep}{saved}"
    try:
        yield
    finally:
        os.environ["PATH"] = saved
