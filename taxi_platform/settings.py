"""Settings from environment variables: defaults, validation, and nothing else.

This module is the only place that reads `TAXI_*` variables, with `gcp/settings.py` for the GCP
target's (using the readers below). Every setting is listed in docs/settings.md.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from taxi_platform.redact import mask_url
from taxi_platform.source_specs import SOURCES, SourceSpec
from taxi_platform.target import GCP, LOCAL, TARGETS, Target

if TYPE_CHECKING:
    from taxi_platform.gcp.settings import GcpSettings

DEFAULT_SOURCE_URL = "https://github.com/DataTalksClub/nyc-tlc-data/releases/download"
# The TLC's own releases: `<base>/trip-data/<dataset>_tripdata_<YYYY-MM>.parquet`.
DEFAULT_TLC_URL = "https://d37ci6vzurychx.cloudfront.net"
# The GitHub REST API of the same repository: the release sensor polls `<this>/releases`.
DEFAULT_RELEASES_API_URL = "https://api.github.com/repos/DataTalksClub/nyc-tlc-data"
# What the release sensor does on its first tick (no cursor yet); see automation/release_sensor.py.
FIRST_TICK_MODES = ("baseline", "backfill")
# The dbt project ships beside the package in the repository (an editable install).
DEFAULT_DBT_PROJECT_DIR = Path(__file__).resolve().parents[1] / "dbt_project"


class SettingsError(ValueError):
    """A setting has a value the platform refuses; the message names the setting."""


_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def validate_identifier(value: str, setting: str) -> str:
    """Schema / table names from configuration: lower-case letters, digits, underscores only."""
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        raise SettingsError(
            f"{setting}={value!r} is not a valid SQL identifier: use lower-case letters, digits and "
            "underscores, starting with a letter or underscore, at most 63 characters"
        )
    return value


def default_home() -> Path:
    return Path.home() / ".taxi_platform"


def env_text(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value is None or value.strip() == "" else value.strip()


def env_int(name: str, default: int, minimum: int = 0) -> int:
    raw = env_text(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} must be at least {minimum}")
    return value


def env_float(name: str, default: float, lo: float, hi: float) -> float:
    raw = env_text(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{name}={value} must lie between {lo} and {hi}")
    return value


def dbt_project_dir_from_env() -> Path:
    """TAXI_DBT_PROJECT_DIR alone: what preparing the dbt project needs, whatever the other settings."""
    return Path(env_text("TAXI_DBT_PROJECT_DIR") or DEFAULT_DBT_PROJECT_DIR).resolve()


def _compare_target_from_env() -> Target | None:
    name = (env_text("TAXI_COMPARE_TARGET") or "").lower()
    return _target(name, "TAXI_COMPARE_TARGET", " or unset it") if name else None


def _path_or_none(value: str | None) -> Path | None:
    return Path(value).expanduser().resolve() if value else None


def _target(value: Target | str, setting: str, alternative: str = "") -> Target:
    if isinstance(value, Target):
        return value
    if value not in TARGETS:
        raise SettingsError(f"{setting}={value!r}: choose one of {', '.join(TARGETS)}{alternative}")
    return TARGETS[value]


@dataclass(frozen=True)
class Settings:
    # Either field may be given by name ("local", "gcp", as TAXI_TARGET spells it): __post_init__
    # resolves the name, so that a name is validated in one place whoever builds the Settings.
    target: Target = LOCAL
    # A second target each month must agree with (counts and ids), when both are configured.
    compare_target: Target | None = None
    home: Path = field(default_factory=default_home)
    source: str = "tlc"  # TAXI_SOURCE: a key of source_specs.SOURCES
    tlc_url: str = DEFAULT_TLC_URL
    source_url: str = DEFAULT_SOURCE_URL  # the course source's base URL
    postgres_url: str | None = field(default=None, repr=False)  # secret: never printed
    warehouse_schema: str = "taxi"
    staging_schema: str = "taxi_staging"
    dbt_schema: str = "taxi_dbt"
    dbt_project_dir: Path = field(default_factory=lambda: DEFAULT_DBT_PROJECT_DIR)
    download_attempts: int = 5
    download_timeout_seconds: int = 60
    download_deadline_seconds: int = 3600  # a whole download, every attempt included
    min_in_month_share: float = 0.95
    # Memory of the ingest engine's id tracker (DuckDB spills to TAXI_HOME/engine past it).
    engine_memory_mb: int = 128
    embedded_port: int = 0  # 0: pick a free port the first time, then keep it
    gcp: GcpSettings | None = None  # TAXI_TARGET=gcp: GCS lake + BigQuery (see GcpSettings)
    # Automation (automation/): the release sensor and failure notifications.
    releases_api_url: str = DEFAULT_RELEASES_API_URL
    github_token: str | None = field(default=None, repr=False)  # secret: never printed
    release_sensor_first_tick: str = "baseline"
    release_sensor_interval_seconds: int = 300
    releases_api_max_pages: int = 3
    # tlc_release_sensor: HEAD requests per tick, and the recent months it watches for publications.
    tlc_sensor_requests: int = 32
    tlc_sensor_recent_months: int = 6
    failure_log: Path | None = None  # JSON lines of run-failure summaries, if set

    def __post_init__(self) -> None:
        object.__setattr__(self, "target", _target(self.target, "TAXI_TARGET"))
        if self.compare_target is not None:
            compare = _target(self.compare_target, "TAXI_COMPARE_TARGET", " or unset it")
            object.__setattr__(self, "compare_target", compare)
        if self.compare_target == self.target:
            raise SettingsError(
                f"TAXI_COMPARE_TARGET={self.target.name!r} is TAXI_TARGET itself: name the other one"
            )
        if self.compare_target is GCP and self.gcp is None:
            raise SettingsError("TAXI_COMPARE_TARGET=gcp needs TAXI_GCP_PROJECT and TAXI_GCS_BUCKET")
        if self.target is GCP and self.gcp is None:
            raise SettingsError("TAXI_TARGET=gcp needs TAXI_GCP_PROJECT and TAXI_GCS_BUCKET")
        if self.gcp is not None and self.gcp.bq_dataset in (self.staging_schema, self.dbt_schema):
            raise SettingsError(
                "TAXI_BQ_DATASET must differ from TAXI_STAGING_SCHEMA and "
                "TAXI_DBT_SCHEMA (the staging and dbt datasets on BigQuery)"
            )
        validate_identifier(self.warehouse_schema, "TAXI_WAREHOUSE_SCHEMA")
        validate_identifier(self.staging_schema, "TAXI_STAGING_SCHEMA")
        validate_identifier(self.dbt_schema, "TAXI_DBT_SCHEMA")
        if len({self.warehouse_schema, self.staging_schema, self.dbt_schema}) < 3:
            raise SettingsError("TAXI_WAREHOUSE_SCHEMA, TAXI_STAGING_SCHEMA and TAXI_DBT_SCHEMA must differ")
        if self.source not in SOURCES:
            raise SettingsError(f"TAXI_SOURCE={self.source!r}: choose one of {', '.join(SOURCES)}")
        if not re.match(r"^(https?|file)://", self.tlc_url):
            raise SettingsError(
                f"TAXI_TLC_URL={mask_url(self.tlc_url)!r} must start with http://, https:// or file://"
            )
        if not re.match(r"^(https?|file)://", self.source_url):
            raise SettingsError(
                f"TAXI_SOURCE_URL={mask_url(self.source_url)!r} must start with http://, https:// or file://"
            )
        if self.postgres_url is not None and not re.match(r"^postgres(ql)?://", self.postgres_url):
            # Never echoed, not even masked: a value that is not a URL may hold its password
            # anywhere (a libpq keyword string, a typo in the scheme).
            raise SettingsError(
                "TAXI_POSTGRES_URL is not a postgresql:// URL (its value is not shown: it may hold a "
                "password); write it as postgresql://user:password@host:port/database"
            )
        if not re.match(r"^https?://", self.releases_api_url):
            raise SettingsError(
                f"TAXI_RELEASES_API_URL={mask_url(self.releases_api_url)!r} must start with http:// or https://"
            )
        if self.release_sensor_first_tick not in FIRST_TICK_MODES:
            raise SettingsError(
                f"TAXI_RELEASE_SENSOR_FIRST_TICK={self.release_sensor_first_tick!r}: "
                f"choose one of {', '.join(FIRST_TICK_MODES)}"
            )
        if not 1 <= self.releases_api_max_pages <= 10:
            raise SettingsError(
                f"TAXI_RELEASES_API_MAX_PAGES={self.releases_api_max_pages} must lie "
                "between 1 and 10 (each page is one HTTP call per sensor tick)"
            )

    @property
    def source_spec(self) -> SourceSpec:
        return SOURCES[self.source]

    @property
    def lake_dir(self) -> Path:
        return self.home / "lake"

    @property
    def embedded_pg_dir(self) -> Path:
        return self.home / "postgres"

    @classmethod
    def from_env(cls) -> Settings:
        from taxi_platform.gcp.settings import GcpSettings  # it reads with this module's readers

        home = env_text("TAXI_HOME")
        return cls(
            target=_target((env_text("TAXI_TARGET", "local") or "local").lower(), "TAXI_TARGET"),
            home=Path(home).expanduser().resolve() if home else default_home(),
            source=(env_text("TAXI_SOURCE", "tlc") or "").lower(),
            tlc_url=(env_text("TAXI_TLC_URL", DEFAULT_TLC_URL) or "").rstrip("/"),
            source_url=(env_text("TAXI_SOURCE_URL", DEFAULT_SOURCE_URL) or "").rstrip("/"),
            postgres_url=env_text("TAXI_POSTGRES_URL"),
            warehouse_schema=env_text("TAXI_WAREHOUSE_SCHEMA", "taxi") or "",
            staging_schema=env_text("TAXI_STAGING_SCHEMA", "taxi_staging") or "",
            dbt_schema=env_text("TAXI_DBT_SCHEMA", "taxi_dbt") or "",
            dbt_project_dir=dbt_project_dir_from_env(),
            download_attempts=env_int("TAXI_DOWNLOAD_ATTEMPTS", 5, minimum=1),
            download_timeout_seconds=env_int("TAXI_DOWNLOAD_TIMEOUT", 60, minimum=1),
            download_deadline_seconds=env_int("TAXI_DOWNLOAD_DEADLINE", 3600, minimum=10),
            min_in_month_share=env_float("TAXI_MIN_IN_MONTH_SHARE", 0.95, 0.0, 1.0),
            engine_memory_mb=env_int("TAXI_ENGINE_MEMORY_MB", 128, minimum=64),
            embedded_port=env_int("TAXI_EMBEDDED_PG_PORT", 0, minimum=0),
            compare_target=_compare_target_from_env(),
            gcp=GcpSettings.from_env()
            if GCP.name
            in ((env_text("TAXI_TARGET") or "").lower(), (env_text("TAXI_COMPARE_TARGET") or "").lower())
            else None,
            releases_api_url=(env_text("TAXI_RELEASES_API_URL", DEFAULT_RELEASES_API_URL) or "").rstrip("/"),
            github_token=env_text("TAXI_GITHUB_TOKEN") or env_text("GITHUB_TOKEN"),
            release_sensor_first_tick=(env_text("TAXI_RELEASE_SENSOR_FIRST_TICK", "baseline") or "").lower(),
            release_sensor_interval_seconds=env_int("TAXI_RELEASE_SENSOR_INTERVAL", 300, minimum=30),
            releases_api_max_pages=env_int("TAXI_RELEASES_API_MAX_PAGES", 3, minimum=1),
            tlc_sensor_requests=env_int("TAXI_TLC_SENSOR_REQUESTS", 32, minimum=1),
            tlc_sensor_recent_months=env_int("TAXI_TLC_SENSOR_RECENT_MONTHS", 6, minimum=1),
            failure_log=_path_or_none(env_text("TAXI_FAILURE_LOG")),
        )


def settings_from_env() -> Settings:
    """Settings.from_env(), once per environment: the code location's modules (taxi_platform/defs/)
    share one Settings, and a changed environment (a test's) gives new Settings."""
    return _settings_of(frozenset(os.environ.items()))


@functools.lru_cache(maxsize=1)
def _settings_of(_environment: frozenset[tuple[str, str]]) -> Settings:
    return Settings.from_env()
