"""What our month load is compared with, each on the benchmark's PostgreSQL:

- the floor: `gunzip -c <file> | psql -c "\\copy t FROM STDIN ..."` into an unindexed typed table
  (the same column types as our staging table), created beforehand (a regular, logged table);
  also into an UNLOGGED table created in the COPY's transaction (extra information);
- the reference pipeline's SQL (the course's Kestra flow, TLC_DATA.md §5): ONE shared staging
  table, TRUNCATE, COPY, UPDATE ... md5(7 fields, no separator), MERGE INTO the final table ON
  unique_row_id WHEN NOT MATCHED THEN INSERT; the tables as the flow creates them (no index);
- the course's module-1 loader: pandas `read_csv(chunksize=100_000)` + `to_sql(if_exists='append')`.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import psycopg2

from taxi_platform.datasets import ColumnType, DatasetSpec
from taxi_platform.warehouse.embedded.binaries import bin_dir
from taxi_platform.warehouse.postgres_ddl import PG_TYPES

FLOOR_SCHEMA = "bench_floor"
REFERENCE_SCHEMA = "bench_reference"
PANDAS_SCHEMA = "bench_pandas"

# TLC_DATA.md §2, "types the reference pipeline uses in Postgres".
_REFERENCE_TEXT = {"VendorID", "RatecodeID", "PULocationID", "DOLocationID", "store_and_fwd_flag"}
_REFERENCE_INTEGER = {"passenger_count", "payment_type", "trip_type"}


def _psql(url: str) -> tuple[list[str], dict[str, str]]:
    """psql's command and environment for `url`: the password in PGPASSWORD, not in argv (ps)."""
    parts = urlsplit(url)
    env = dict(os.environ)
    netloc = parts.netloc
    if parts.password is not None:
        env["PGPASSWORD"] = unquote(parts.password)
        netloc = netloc.replace(f":{parts.password}@", "@", 1)
    return [str(bin_dir() / "psql"), urlunsplit(parts._replace(netloc=netloc))], env


def _timed_pipe(url: str, path: Path, commands: list[str]) -> float:
    """`gunzip -c path | psql url -c ...`: the wall time of the whole pipeline."""
    psql, env = _psql(url)
    psql += ["-X", "-q", "-v", "ON_ERROR_STOP=1"]
    for command in commands:
        psql += ["-c", command]
    started = time.monotonic()
    gunzip = subprocess.Popen(["gunzip", "-c", str(path)], stdout=subprocess.PIPE)
    assert gunzip.stdout is not None  # stdout=PIPE
    loader = subprocess.run(psql, stdin=gunzip.stdout, capture_output=True, text=True, env=env)
    gunzip.stdout.close()
    gunzip.wait()
    seconds = time.monotonic() - started
    if gunzip.returncode != 0 or loader.returncode != 0:
        raise RuntimeError(f"gunzip | psql failed: {loader.stderr.strip()[-2000:]}")
    return seconds


def _execute(url: str, *statements: str) -> None:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


def _typed_columns(spec: DatasetSpec) -> str:
    return ", ".join(f'"{c.name}" {PG_TYPES[c.type]}' for c in map(spec.column, spec.csv_columns))


def floor(url: str, spec: DatasetSpec, path: Path, *, unlogged: bool = False) -> dict:
    """COPY of the raw file by psql into a typed, unindexed table: what the database can ingest."""
    table = f"{FLOOR_SCHEMA}.{spec.table_name}"
    _execute(
        url, f"CREATE SCHEMA IF NOT EXISTS {FLOOR_SCHEMA}", f"DROP TABLE IF EXISTS {table}", "CHECKPOINT"
    )
    copy = f"\\copy {table} FROM STDIN WITH (FORMAT csv, HEADER true)"
    create = f"CREATE {'UNLOGGED ' if unlogged else ''}TABLE {table} ({_typed_columns(spec)})"
    if unlogged:  # created in the COPY's transaction (psql -1 would need a file; BEGIN/COMMIT)
        seconds = _timed_pipe(url, path, ["BEGIN", create, copy, "COMMIT"])
    else:  # created beforehand: the headline floor
        _execute(url, create)
        seconds = _timed_pipe(url, path, [copy])
    _execute(url, f"DROP TABLE {table}")
    return {"seconds": seconds}


def _reference_columns(spec: DatasetSpec) -> list[tuple[str, str]]:
    """(name, type) in file order, the names unquoted (lower-case) as the Kestra flow writes them."""
    out = []
    for c in map(spec.column, spec.csv_columns):
        if c.name in _REFERENCE_TEXT:
            type_ = "text"
        elif c.name in _REFERENCE_INTEGER:
            type_ = "integer"
        elif c.type is ColumnType.TIMESTAMP:
            type_ = "timestamp"
        elif c.type is ColumnType.DECIMAL:
            type_ = "double precision"
        else:
            type_ = "text"
        out.append((c.name.lower(), type_))
    return out


def reference_reset(url: str, spec: DatasetSpec) -> None:
    _execute(url, f"DROP SCHEMA IF EXISTS {REFERENCE_SCHEMA} CASCADE")


def reference(url: str, spec: DatasetSpec, path: Path, file_name: str) -> dict:
    """The Kestra flow's SQL, statement by statement, timed (the COPY streamed like the floor's).

    The final table is created as the flow creates it: no primary key, no index; the MERGE joins
    on unique_row_id (a hash join over the whole final table).
    """
    cols = _reference_columns(spec)
    names = [n for n, _ in cols]
    defs = ", ".join(f"{n} {t}" for n, t in cols)
    final = f"{REFERENCE_SCHEMA}.{spec.table_name}"
    staging = f"{REFERENCE_SCHEMA}.{spec.table_name}_staging"
    identity = [c.lower() for c in spec.identity_columns]
    hashed = " || ".join(
        f"COALESCE({n}, '')" if dict(cols)[n] == "text" else f"COALESCE(CAST({n} AS text), '')"
        for n in identity
    )
    _execute(url, f"CREATE SCHEMA IF NOT EXISTS {REFERENCE_SCHEMA}", "CHECKPOINT")
    phases: dict[str, float] = {}
    started = time.monotonic()
    conn = psycopg2.connect(url)
    conn.autocommit = True  # Kestra runs each task's statement on its own
    try:
        with conn.cursor() as cur:
            t = time.monotonic()
            cur.execute(f"CREATE TABLE IF NOT EXISTS {final} (unique_row_id text, filename text, {defs})")
            cur.execute(f"CREATE TABLE IF NOT EXISTS {staging} (unique_row_id text, filename text, {defs})")
            cur.execute(f"TRUNCATE TABLE {staging}")
            phases["create_truncate"] = time.monotonic() - t
            phases["copy"] = _timed_pipe(
                url,
                path,
                [f"\\copy {staging} ({', '.join(names)}) FROM STDIN WITH (FORMAT csv, HEADER true)"],
            )
            t = time.monotonic()
            cur.execute(f"UPDATE {staging} SET unique_row_id = md5({hashed}), filename = %s", (file_name,))
            phases["update_md5"] = time.monotonic() - t
            t = time.monotonic()
            cur.execute(
                f"MERGE INTO {final} AS T USING {staging} AS S ON T.unique_row_id = S.unique_row_id "
                f"WHEN NOT MATCHED THEN INSERT (unique_row_id, filename, {', '.join(names)}) "
                f"VALUES (S.unique_row_id, S.filename, {', '.join('S.' + n for n in names)})"
            )
            inserted = cur.rowcount
            phases["merge"] = time.monotonic() - t
    finally:
        conn.close()
    return {"seconds": time.monotonic() - started, "phases": phases, "rows_inserted": inserted}


def pandas_to_sql(url: str, spec: DatasetSpec, path: Path, rows: int) -> dict:
    """The course's module-1 ingest script: typed read_csv in chunks of 100,000, to_sql append."""
    import pandas as pd
    from sqlalchemy import create_engine

    dtype = {}
    for c in map(spec.column, spec.csv_columns):
        if c.type is ColumnType.INTEGER:
            dtype[c.name] = "Int64"
        elif c.type is ColumnType.DECIMAL:
            dtype[c.name] = "float64"
        elif c.type is ColumnType.TEXT:
            dtype[c.name] = "string"
    parse_dates = [spec.pickup_column, spec.dropoff_column]
    _execute(
        url, f"DROP SCHEMA IF EXISTS {PANDAS_SCHEMA} CASCADE", f"CREATE SCHEMA {PANDAS_SCHEMA}", "CHECKPOINT"
    )
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg2://", 1))
    table = spec.table_name
    loaded = 0
    started = time.monotonic()
    try:
        chunks = pd.read_csv(
            path, dtype=dtype, parse_dates=parse_dates, iterator=True, chunksize=100_000, nrows=rows
        )
        first = True
        for chunk in chunks:
            if first:
                chunk.head(n=0).to_sql(name=table, con=engine, schema=PANDAS_SCHEMA, if_exists="replace")
                first = False
            chunk.to_sql(name=table, con=engine, schema=PANDAS_SCHEMA, if_exists="append")
            loaded += len(chunk)
    finally:
        engine.dispose()
    seconds = time.monotonic() - started
    _execute(url, f"DROP SCHEMA {PANDAS_SCHEMA} CASCADE")
    return {"seconds": seconds, "rows": loaded}
