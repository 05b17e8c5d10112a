"""DuckDB extensions from their PyPI wheels: nothing is downloaded at run time."""

from __future__ import annotations

from pathlib import Path

import duckdb


def extension_file(package: str, name: str) -> Path:
    """The extension binary a `duckdb-extension-*` wheel ships, for this DuckDB version."""
    module = __import__(package)
    version = duckdb.__version__
    path = Path(str(module.__file__)).parent / "extensions" / f"v{version}" / f"{name}.duckdb_extension"
    if not path.is_file():
        raise RuntimeError(
            f"{path} is missing: install the {package.replace('_', '-')} wheel matching duckdb {version}"
        )
    return path


def load_postgres_extension(con: duckdb.DuckDBPyConnection) -> None:
    """DuckDB's postgres extension (binary COPY into PostgreSQL), from duckdb-extension-postgres-scanner."""
    con.execute(f"LOAD '{extension_file('duckdb_extension_postgres_scanner', 'postgres_scanner')}'")
