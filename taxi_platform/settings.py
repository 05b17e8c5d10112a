"""Settings from environment variables: defaults, validation, and nothing else.

This module is the only place that reads `TAXI_*` variables. Every setting is listed in the README.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from taxi_platform.redact import mask_url

DEFAULT_SOURCE_URL = "https://github.com/DataTalksClub/nyc-tlc-data/releases/download"
TARGETS = ("local",)
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


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value is None or value.strip() == "" else value.strip()


def _int(name: str, default: int, minimum: int = 0) -> int:
    raw = _env(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} must be at least {minimum}")
    return value


def _float(name: str, default: float, lo: float, hi: float) -> float:
    raw = _env(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{name}={value} must lie between {lo} and {hi}")
    return value


@dataclass(frozen=True)
class Settings:
    target: str = "local"
    home: Path = field(default_factory=default_home)
    source_url: str = DEFAULT_SOURCE_URL
    postgres_url: str | None = field(default=None, repr=False)  # secret: never printed
    warehouse_schema: str = "taxi"
    staging_schema: str = "taxi_staging"
    dbt_schema: str = "taxi_dbt"
    dbt_project_dir: Path = field(default_factory=lambda: DEFAULT_DBT_PROJECT_DIR)
    download_attempts: int = 5
    download_timeout_seconds: int = 60
    min_in_month_share: float = 0.95
    embedded_port: int = 0  # 0: pick a free port the first time, then keep it

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise SettingsError(f"TAXI_TARGET={self.target!r}: choose one of {', '.join(TARGETS)}")
        validate_identifier(self.warehouse_schema, "TAXI_WAREHOUSE_SCHEMA")
        validate_identifier(self.staging_schema, "TAXI_STAGING_SCHEMA")
        validate_identifier(self.dbt_schema, "TAXI_DBT_SCHEMA")
        if len({self.warehouse_schema, self.staging_schema, self.dbt_schema}) < 3:
            raise SettingsError("TAXI_WAREHOUSE_SCHEMA, TAXI_STAGING_SCHEMA and TAXI_DBT_SCHEMA must differ")
        if not re.match(r"^(https?|file)://", self.source_url):
            raise SettingsError(
                f"TAXI_SOURCE_URL={mask_url(self.source_url)!r} must start with http://, https:// or file://"
            )
        if self.postgres_url is not None and not re.match(r"^postgres(ql)?://", self.postgres_url):
            raise SettingsError(
                f"TAXI_POSTGRES_URL={mask_url(self.postgres_url)!r} must be a postgresql:// URL"
            )

    @property
    def lake_dir(self) -> Path:
        return self.home / "lake"

    @property
    def embedded_pg_dir(self) -> Path:
        return self.home / "postgres"

    @classmethod
    def from_env(cls) -> "Settings":
        home = _env("TAXI_HOME")
        return cls(
            target=(_env("TAXI_TARGET", "local") or "local").lower(),
            home=Path(home).expanduser().resolve() if home else default_home(),
            source_url=(_env("TAXI_SOURCE_URL", DEFAULT_SOURCE_URL) or "").rstrip("/"),
            postgres_url=_env("TAXI_POSTGRES_URL"),
            warehouse_schema=_env("TAXI_WAREHOUSE_SCHEMA", "taxi") or "",
            staging_schema=_env("TAXI_STAGING_SCHEMA", "taxi_staging") or "",
            dbt_schema=_env("TAXI_DBT_SCHEMA", "taxi_dbt") or "",
            dbt_project_dir=Path(_env("TAXI_DBT_PROJECT_DIR") or DEFAULT_DBT_PROJECT_DIR).resolve(),
            download_attempts=_int("TAXI_DOWNLOAD_ATTEMPTS", 5, minimum=1),
            download_timeout_seconds=_int("TAXI_DOWNLOAD_TIMEOUT", 60, minimum=1),
            min_in_month_share=_float("TAXI_MIN_IN_MONTH_SHARE", 0.95, 0.0, 1.0),
            embedded_port=_int("TAXI_EMBEDDED_PG_PORT", 0, minimum=0),
        )
