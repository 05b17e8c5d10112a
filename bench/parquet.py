"""Parquet months into PostgreSQL against the floor: `python -m bench.parquet` (`make bench-parquet`).

For a generated yellow month (3.5 M rows) and fhvhv month (20 M rows, `--fhvhv-rows`), in the same
run, on the embedded server:
  floor  DuckDB's postgres extension loading the file as it is into a new unindexed table
         (`CREATE TABLE pg.t AS SELECT * FROM read_parquet(...)`: binary COPY, the file's types)
  ours   the platform's load of the month: staging (era, casts, trip ids, in-file duplicates,
         binary COPY) and the swap that attaches it, with the peak RSS of the process
The target: ours <= 1.2 x floor. Results: printed, and appended to bench/results/parquet.jsonl.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb

from bench.meter import server_cpu
from taxi_platform.engine.duckdb_extensions import load_postgres_extension
from taxi_platform.lake.handles import LakeFile
from taxi_platform.sample.parquet_generator import generate_parquet_month
from taxi_platform.source_specs import TLC_PARQUET, source_datasets
from taxi_platform.warehouse.embedded.server import EmbeddedPostgres
from taxi_platform.warehouse.postgres import PostgresWarehouse

MONTH = date(2024, 3, 1)
TARGET = 1.2


def floor(url: str, path: Path) -> float:
    con = duckdb.connect(config={"threads": 2})
    load_postgres_extension(con)
    con.execute(f"ATTACH '{url}' AS pg (TYPE postgres)")
    con.execute("CALL postgres_execute('pg', 'CREATE SCHEMA IF NOT EXISTS bench_floor')")
    con.execute("CALL postgres_execute('pg', 'DROP TABLE IF EXISTS bench_floor.month; CHECKPOINT')")
    started = time.monotonic()
    con.execute(f"CREATE TABLE pg.bench_floor.month AS SELECT * FROM read_parquet('{path}')")
    seconds = time.monotonic() - started
    con.execute("CALL postgres_execute('pg', 'DROP TABLE bench_floor.month')")
    con.close()
    return seconds


def ours(wh: PostgresWarehouse, spec, path: Path) -> dict:
    lake_file = LakeFile(path.as_uri(), path.name, path.stat().st_size, lambda: open(path, "rb"))
    started = time.monotonic()
    staged = wh.load_staging(spec, MONTH, lake_file, lambda _m: None, run_id="bench")
    staging = time.monotonic() - started
    replaced = wh.replace_month(spec, MONTH, lambda _m: None, run_id="bench", staged_sha256=staged.sha256)
    return {
        "seconds": time.monotonic() - started,
        "staging_seconds": staging,
        "rows_read": staged.rows_read,
        "final_rows": replaced.final_rows,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--yellow-rows", type=int, default=3_500_000)
    parser.add_argument("--fhvhv-rows", type=int, default=20_000_000)
    parser.add_argument("--tmp", default=None)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="taxi-bench-parquet-", dir=args.tmp))
    root.chmod(0o755)  # the embedded server runs as `nobody` when we are root
    server = EmbeddedPostgres(root / "home" / "postgres")
    url = server.ensure_running()
    wh = PostgresWarehouse(
        url=url, home=str(root / "home"), warehouse_schema="bench", staging_schema="bench_staging"
    )
    specs = source_datasets(TLC_PARQUET)
    results = []
    try:
        for name, rows in (("yellow", args.yellow_rows), ("fhvhv", args.fhvhv_rows)):
            path = root / specs[name].file_name(MONTH)
            made = generate_parquet_month(specs[name], MONTH, path, rows=rows, seed=1)
            cpu_before = server_cpu(server.data_dir)
            floor_seconds = floor(url, path)
            ours_result = ours(wh, specs[name], path)
            cpu_after = server_cpu(server.data_dir)
            assert ours_result["final_rows"] == made.distinct_rows, (ours_result, made)
            entry = {
                "dataset": name,
                "rows": rows,
                "bytes": path.stat().st_size,
                "floor_seconds": round(floor_seconds, 2),
                **{k: round(v, 2) if isinstance(v, float) else v for k, v in ours_result.items()},
                "ratio": round(ours_result["seconds"] / floor_seconds, 2),
                "server_cpu_seconds": (
                    None if cpu_before is None or cpu_after is None else round(cpu_after - cpu_before, 1)
                ),
            }
            results.append(entry)
            print(
                f"{name} {rows:,} rows ({entry['bytes'] / 1e6:,.0f} MB): floor {entry['floor_seconds']} s, "
                f"ours {entry['seconds']} s (staging {entry['staging_seconds']} s), ratio {entry['ratio']} "
                f"(target <= {TARGET}: {'met' if entry['ratio'] <= TARGET else 'NOT met'})",
                flush=True,
            )
            path.unlink()
    finally:
        server.stop()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process (generation included): {peak_mb:,.0f} MB")
    out = Path(__file__).parent / "results" / "parquet.jsonl"
    out.parent.mkdir(exist_ok=True)
    with open(out, "a") as fh:
        fh.write(
            json.dumps({"at": datetime.now(UTC).isoformat(), "results": results, "peak_rss_mb": peak_mb})
            + "\n"
        )
    return 0 if all(r["ratio"] <= TARGET for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
