"""The month's replace in PostgreSQL: a new table swapped in for the month's partition, the id
profile the checks use established inside that transaction, and months swapping at once."""

from __future__ import annotations

import threading
import time
from datetime import date

import psycopg2
import pytest
from psycopg2 import sql

from conftest import Env, materialization_metadata
from expected import csv_lines, expected_from_file, read_gz, write_gz
from taxi_platform.assets.trips import final_key
from taxi_platform.datasets import YELLOW
from taxi_platform.sample.generator import generate_month
from taxi_platform.warehouse.base import WarehouseError
import taxi_platform.warehouse.postgres_month as postgres_month
from taxi_platform.warehouse.postgres import PostgresWarehouse
from taxi_platform.warehouse.postgres_month import StagedMonth

JAN, FEB = date(2019, 1, 1), date(2019, 2, 1)


def test_a_duplicate_left_in_the_staged_rows_fails_the_blocking_check(env: Env, monkeypatch):
    # The engine counted the file's distinct ids; the server counts the rows kept. If the later
    # occurrences were not deleted, the two differ and the blocking uniqueness check fails.
    path = env.mirror_path(YELLOW, JAN)
    generate_month(YELLOW, JAN, path, rows=3_000, seed=8)
    lines = csv_lines(read_gz(path))
    write_gz(path, b"".join(lines + [lines[10]] * 2 + [lines[20]]))
    expected = expected_from_file(YELLOW, path)
    delete_later = postgres_month._delete_later_occurrences

    class NoDelete:  # the cursor, but its DELETE statements are dropped
        def __init__(self, cur):
            self.cur, self.rowcount = cur, 0

        def execute(self, query, params=None):
            if not query.as_string(self.cur).startswith("DELETE"):
                self.cur.execute(query, params)

        def fetchall(self):
            return self.cur.fetchall()

    monkeypatch.setattr(postgres_month, "_delete_later_occurrences",
                        lambda cur, *args: delete_later(NoDelete(cur), *args))

    result = env.materialize(YELLOW, JAN)

    (unique,) = [c for c in result.get_asset_check_evaluations()
                 if c.check_name == "unique_row_id_is_unique"]
    assert not unique.passed
    assert {k: v.value for k, v in unique.metadata.items()} == {
        "rows": expected.rows, "duplicate_ids": expected.duplicates}


def test_staged_month_comment_round_trips():
    staged = StagedMonth(rows=7_692_280, distinct=7_692_280, read=7_700_000, in_month=7_691_000,
                         run_id="abc-123")
    assert StagedMonth.parse(staged.comment("yellow_tripdata_2019-01.csv.gz")) == staged
    uncounted = StagedMonth(rows=5, distinct=5, read=6, in_month=None, run_id="")
    assert StagedMonth.parse(uncounted.comment("f.csv.gz")) == uncounted
    assert StagedMonth.parse("rows=5 (yellow_tripdata_2019-01.csv.gz, loaded by taxi_platform)") is None
    assert StagedMonth.parse(None) is None


def test_check_metadata_of_a_month_with_duplicates(env: Env):
    path = env.mirror_path(YELLOW, JAN)
    generate_month(YELLOW, JAN, path, rows=3_000, seed=8)
    lines = csv_lines(read_gz(path))
    write_gz(path, b"".join(lines + [lines[10]] * 2 + [lines[20]]))
    expected = expected_from_file(YELLOW, path)

    result = env.materialize(YELLOW, JAN, raise_on_error=True)

    (unique,) = [c for c in result.get_asset_check_evaluations()
                 if c.check_name == "unique_row_id_is_unique"]
    assert unique.passed
    assert {k: v.value for k, v in unique.metadata.items()} == {"rows": expected.distinct, "duplicate_ids": 0}
    assert env.query(f"SELECT count(*), count(DISTINCT unique_row_id) FROM {env.final(YELLOW)}")[0] == (
        expected.distinct, expected.distinct)


def test_readers_see_the_old_rows_while_the_new_ones_are_written(env: Env):
    small = generate_month(YELLOW, JAN, env.mirror_path(YELLOW, JAN), rows=1_000, seed=1)
    env.materialize(YELLOW, JAN, raise_on_error=True)
    old_rows = small.rows - small.duplicate_rows
    big = generate_month(YELLOW, JAN, env.mirror_path(YELLOW, JAN), rows=300_000, seed=2)

    seen: list[int] = []
    waited: list[float] = []
    done = threading.Event()

    def read() -> None:
        conn = psycopg2.connect(env.pg_url)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SET lock_timeout = '5s'")
            while not done.is_set():
                t = time.monotonic()
                cur.execute(f"SELECT count(*) FROM {env.final(YELLOW)}")
                waited.append(time.monotonic() - t)
                seen.append(cur.fetchone()[0])
                time.sleep(0.02)
        conn.close()

    reader = threading.Thread(target=read)
    reader.start()
    try:
        result = env.materialize(YELLOW, JAN, raise_on_error=True)
    finally:
        done.set()
        reader.join()
    new_rows = big.rows - big.duplicate_rows
    assert materialization_metadata(result, final_key(YELLOW))["previous_rows"] == old_rows
    # Every read saw one whole version, the old one until the swap, then the new one.
    assert set(seen) <= {old_rows, new_rows} and seen[0] == old_rows and seen[-1] == new_rows
    assert seen == sorted(seen, key=lambda n: n == new_rows)
    assert len(seen) > 10 and max(waited) < 2.0, (len(seen), max(waited))


def test_two_months_swap_in_at_once(env: Env):
    # Two processes replacing different months of the same table: each swap takes the parent's
    # lock at its very end only, so neither waits for the other's load, and they cannot deadlock.
    expected = {}
    for month, seed in ((JAN, 31), (FEB, 32)):
        generated = generate_month(YELLOW, month, env.mirror_path(YELLOW, month), rows=150_000, seed=seed)
        expected[YELLOW.file_name(month)] = generated.rows - generated.duplicate_rows
    for _round in range(2):  # the second round replaces existing partitions (DETACH + ATTACH)
        procs = [env.cli_materialize(YELLOW, month) for month in (JAN, FEB)]
        outputs = [p.communicate(timeout=600) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outputs
        assert dict(env.query(f"SELECT filename, count(*) FROM {env.final(YELLOW)} GROUP BY 1")) == expected
    partitions = env.query(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = %s::regclass ORDER BY 1", (f"{env.settings.warehouse_schema}.{YELLOW.table_name}",))
    assert [p for (p,) in partitions] == ["yellow_tripdata_2019_01", "yellow_tripdata_2019_02"]


def test_previous_rows_come_from_the_partitions_comment_or_a_count(env: Env):
    generated = generate_month(YELLOW, JAN, env.mirror_path(YELLOW, JAN), rows=2_000, seed=12)
    rows = generated.rows - generated.duplicate_rows
    env.materialize(YELLOW, JAN, raise_on_error=True)
    partition = f'"{env.settings.warehouse_schema}"."yellow_tripdata_2019_01"'
    comment = env.query(f"SELECT obj_description('{partition}'::regclass, 'pg_class')")[0][0]
    assert comment.startswith(f"rows={rows} distinct={rows} read={generated.rows} in_month=")
    assert comment.endswith(" (yellow_tripdata_2019-01.csv.gz, loaded by taxi_platform)")
    result = env.materialize(YELLOW, JAN, raise_on_error=True)
    assert materialization_metadata(result, final_key(YELLOW))["previous_rows"] == rows

    # A partition without the comment (made by an older version, or the comment removed) is counted.
    env.query(f"DELETE FROM {partition} WHERE ctid IN (SELECT ctid FROM {partition} LIMIT 5)")
    env.query(f"COMMENT ON TABLE {partition} IS NULL")
    result = env.materialize(YELLOW, JAN, raise_on_error=True)
    assert materialization_metadata(result, final_key(YELLOW))["previous_rows"] == rows - 5


def test_a_swap_after_the_other_loads_swap_finds_the_month_attached(env: Env):
    # Two loads of January at once, in the order the pool can give them: A stages, B stages
    # (replacing A's table), B swaps, then A swaps. A has nothing left to do and succeeds with
    # the rows B staged (the same file); the table holds them once.
    from taxi_platform.lake.base import LakeFile

    path = env.mirror_path(YELLOW, JAN)
    generated = generate_month(YELLOW, JAN, path, rows=3_000, seed=3)
    lake_file = LakeFile(uri=path.as_uri(), file_name=path.name, size=path.stat().st_size,
                         opener=lambda: open(path, "rb"))
    warehouse, quiet = env.warehouse(), (lambda message: None)
    warehouse.load_staging(YELLOW, JAN, lake_file, quiet, run_id="run-a")
    warehouse.load_staging(YELLOW, JAN, lake_file, quiet, run_id="run-b")
    b = warehouse.replace_month(YELLOW, JAN, quiet, run_id="run-b")
    messages = []
    a = warehouse.replace_month(YELLOW, JAN, messages.append, run_id="run-a")

    distinct = generated.rows - generated.duplicate_rows
    assert a.final_rows == b.final_rows == distinct
    assert any("staged by run run-b are attached already" in m for m in messages)
    assert env.query(f"SELECT count(*), count(DISTINCT unique_row_id) FROM {env.final(YELLOW)}")[0] == (
        distinct, distinct)
