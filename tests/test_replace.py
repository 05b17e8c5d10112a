"""The month's replace in PostgreSQL: a new table swapped in for the month's partition, the id
profile the checks use established inside that transaction, and months swapping at once."""

from __future__ import annotations

import threading
import time
from datetime import date

import dagster as dg
import psycopg2
import pytest
from support.expected import csv_lines, expected_from_file, read_gz, write_gz
from support.pg_env import Env
from support.pg_faults import keep_later_occurrences
from support.run_results import failure_message, materialization_metadata

import taxi_platform.warehouse.postgres_month as postgres_month
from taxi_platform.assets.trip_keys import final_key
from taxi_platform.datasets import YELLOW
from taxi_platform.sample.generator import generate_month
from taxi_platform.warehouse.base import ReplaceResult, WarehouseError
from taxi_platform.warehouse.postgres import PostgresWarehouse
from taxi_platform.warehouse.staged_month import StagedMonth

JAN, FEB = date(2019, 1, 1), date(2019, 2, 1)


def test_a_duplicate_left_in_the_staged_rows_fails_the_blocking_check(env: Env, monkeypatch):
    # The engine counted the file's distinct ids; the server counts the rows kept. If the later
    # occurrences were not deleted, the two differ and the blocking uniqueness check fails.
    path = env.mirror_path(YELLOW, JAN)
    generate_month(YELLOW, JAN, path, rows=3_000, seed=8)
    lines = csv_lines(read_gz(path))
    write_gz(path, b"".join(lines + [lines[10]] * 2 + [lines[20]]))
    expected = expected_from_file(YELLOW, path)
    keep_later_occurrences(monkeypatch)

    result = env.materialize(YELLOW, JAN)

    (unique,) = [c for c in result.get_asset_check_evaluations() if c.check_name == "unique_row_id_is_unique"]
    assert not unique.passed and unique.partition == "2019-01-01"  # filed under its month
    assert {k: v.value for k, v in unique.metadata.items()} == {
        "month": "2019-01",
        "rows": expected.rows,
        "duplicate_ids": expected.duplicates,
    }


def test_staged_month_comment_round_trips():
    staged = StagedMonth(
        rows=7_692_280, distinct=7_692_280, read=7_700_000, in_month=7_691_000, run_id="abc-123"
    )
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

    (unique,) = [c for c in result.get_asset_check_evaluations() if c.check_name == "unique_row_id_is_unique"]
    assert unique.passed
    assert {k: v.value for k, v in unique.metadata.items()} == {
        "month": "2019-01",
        "rows": expected.distinct,
        "duplicate_ids": 0,
    }
    assert env.query(f"SELECT count(*), count(DISTINCT unique_row_id) FROM {env.final(YELLOW)}")[0] == (
        expected.distinct,
        expected.distinct,
    )


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
                row = cur.fetchone()
                assert row is not None
                seen.append(row[0])
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
    assert materialization_metadata(result, final_key(YELLOW))["previous_rows"] == str(old_rows)
    # Every read saw one whole version, the old one until the swap, then the new one.
    assert set(seen) <= {old_rows, new_rows} and seen[0] == old_rows and seen[-1] == new_rows
    assert seen == sorted(seen, key=lambda n: n == new_rows)
    assert len(seen) > 10 and max(waited) < 2.0, (len(seen), max(waited))


@pytest.mark.slow  # two months loaded at once: 10-30 s
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
        "WHERE i.inhparent = %s::regclass ORDER BY 1",
        (f"{env.settings.warehouse_schema}.{YELLOW.table_name}",),
    )
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
    assert materialization_metadata(result, final_key(YELLOW))["previous_rows"] == str(rows)

    # A partition without the comment (made by an older version, or the comment removed) is counted.
    env.query(f"DELETE FROM {partition} WHERE ctid IN (SELECT ctid FROM {partition} LIMIT 5)")
    env.query(f"COMMENT ON TABLE {partition} IS NULL")
    result = env.materialize(YELLOW, JAN, raise_on_error=True)
    assert materialization_metadata(result, final_key(YELLOW))["previous_rows"] == str(rows - 5)


def test_a_swap_after_the_other_loads_swap_finds_the_month_attached(env: Env):
    # Two loads of January at once, in the order the pool can give them: A stages, B stages
    # (replacing A's table), B swaps, then A swaps. A has nothing left to do and succeeds with
    # the rows B staged (the same file); the table holds them once.
    from taxi_platform.lake.handles import LakeFile

    path = env.mirror_path(YELLOW, JAN)
    generated = generate_month(YELLOW, JAN, path, rows=3_000, seed=3)
    lake_file = LakeFile(
        uri=path.as_uri(), file_name=path.name, size=path.stat().st_size, opener=lambda: open(path, "rb")
    )
    warehouse, quiet = env.warehouse(), (lambda message: None)
    warehouse.load_staging(YELLOW, JAN, lake_file, quiet, run_id="run-a")
    warehouse.load_staging(YELLOW, JAN, lake_file, quiet, run_id="run-b")
    b = warehouse.replace_month(YELLOW, JAN, quiet, run_id="run-b")
    messages: list[str] = []
    a = warehouse.replace_month(YELLOW, JAN, messages.append, run_id="run-a")

    distinct = generated.rows - generated.duplicate_rows
    assert a.final_rows == b.final_rows == distinct
    assert any("staged by run run-b are attached already" in m for m in messages)
    assert env.query(f"SELECT count(*), count(DISTINCT unique_row_id) FROM {env.final(YELLOW)}")[0] == (
        distinct,
        distinct,
    )


def _lake_file(path):
    from taxi_platform.lake.handles import LakeFile

    return LakeFile(
        uri=path.as_uri(), file_name=path.name, size=path.stat().st_size, opener=lambda: open(path, "rb")
    )


def test_two_loads_of_a_month_with_different_files_commit_only_their_own(env: Env, tmp_path):
    # Run A stages file 1, run B stages file 2 (a re-published file). Whichever order the swaps
    # take, the month ends with B's rows, and A commits nothing and says so: A's metadata can
    # never describe B's rows.
    one, two = tmp_path / "one" / YELLOW.file_name(JAN), tmp_path / "two" / YELLOW.file_name(JAN)
    first = generate_month(YELLOW, JAN, one, rows=2_000, seed=21)
    second = generate_month(YELLOW, JAN, two, rows=3_000, seed=22)
    warehouse, quiet = env.warehouse(), (lambda message: None)

    for b_swaps_first in (False, True):
        a = warehouse.load_staging(YELLOW, JAN, _lake_file(one), quiet, run_id="run-a")
        b = warehouse.load_staging(YELLOW, JAN, _lake_file(two), quiet, run_id="run-b")
        assert a.sha256 != b.sha256 and len(a.sha256) == 64
        if b_swaps_first:
            warehouse.replace_month(YELLOW, JAN, quiet, run_id="run-b", staged_sha256=b.sha256)
        before = env.fingerprint(YELLOW)
        with pytest.raises(postgres_month.SupersededLoad) as err:
            warehouse.replace_month(YELLOW, JAN, quiet, run_id="run-a", staged_sha256=a.sha256)
        assert f"this run staged the file with sha256 {a.sha256[:12]}" in str(err.value)
        assert f"but run run-b staged it again since, from another file (sha256 {b.sha256[:12]}" in str(
            err.value
        )
        assert env.fingerprint(YELLOW) == before  # nothing changed
        if not b_swaps_first:
            done = warehouse.replace_month(YELLOW, JAN, quiet, run_id="run-b", staged_sha256=b.sha256)
            assert (done.final_rows, done.sha256, done.staged_by_run) == (
                second.rows - second.duplicate_rows,
                b.sha256,
                "run-b",
            )
        assert (
            env.query(f"SELECT count(*) FROM {env.final(YELLOW)}")[0][0]
            == second.rows - second.duplicate_rows
        )

    # The same bytes staged by two runs: either swap commits them, both succeed.
    a = warehouse.load_staging(YELLOW, JAN, _lake_file(one), quiet, run_id="run-c")
    b = warehouse.load_staging(YELLOW, JAN, _lake_file(one), quiet, run_id="run-d")
    assert a.sha256 == b.sha256
    done_c = warehouse.replace_month(YELLOW, JAN, quiet, run_id="run-c", staged_sha256=a.sha256)
    done_d = warehouse.replace_month(YELLOW, JAN, quiet, run_id="run-d", staged_sha256=b.sha256)
    assert done_c.final_rows == done_d.final_rows == first.rows - first.duplicate_rows
    assert done_c.staged_by_run == done_d.staged_by_run == "run-d"


def test_the_final_metadata_names_the_file_it_committed(env: Env):
    from taxi_platform.assets.trip_keys import raw_file_key, staging_key

    generate_month(YELLOW, JAN, env.mirror_path(YELLOW, JAN), rows=1_000, seed=23)
    result = env.materialize(YELLOW, JAN, raise_on_error=True)
    raw = materialization_metadata(result, raw_file_key(YELLOW))
    staged = materialization_metadata(result, staging_key(YELLOW))
    final = materialization_metadata(result, final_key(YELLOW))
    assert raw["sha256"] == staged["source_sha256"] == final["source_sha256"]
    assert final["staged_by_run"] == result.run_id
    # Dagster's standard keys: the table's name per materialization, its columns per asset.
    assert final["dagster/table_name"] == f"{env.settings.warehouse_schema}.yellow_tripdata"
    assert staged["dagster/table_name"].startswith(f"{env.settings.staging_schema}.yellow_tripdata_")
    from taxi_platform.assets.trips import build_trip_assets

    final_asset = build_trip_assets(
        YELLOW, warehouse_kind="postgres", lake_kind="file", min_in_month_share=0.95
    )[2]
    columns = final_asset.specs_by_key[final_key(YELLOW)].metadata["dagster/column_schema"].columns
    assert [(c.name, c.type) for c in columns[:3]] == [
        ("unique_row_id", "text"),
        ("filename", "text"),
        ("VendorID", "integer"),
    ]
    assert len(columns) == 2 + len(YELLOW.columns)


@pytest.mark.slow  # a reader held open for seconds on purpose: about 10 s
def test_a_swap_behind_a_long_reader_does_not_block_other_readers(env: Env, pg_url, monkeypatch):
    old = generate_month(YELLOW, JAN, env.mirror_path(YELLOW, JAN), rows=1_000, seed=24)
    env.materialize(YELLOW, JAN, raise_on_error=True)
    path = env.mirror_path(YELLOW, JAN)
    reloaded = generate_month(YELLOW, JAN, path, rows=1_500, seed=25)
    warehouse = env.warehouse()
    logs: list[str] = []
    staged = warehouse.load_staging(YELLOW, JAN, _lake_file(path), logs.append, run_id="run-r")

    long_reader = psycopg2.connect(pg_url)  # a long report: holds its lock until it commits
    with long_reader.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {env.final(YELLOW)}")
    outcome: dict[str, ReplaceResult] = {}
    swap = threading.Thread(
        target=lambda: outcome.update(
            result=warehouse.replace_month(
                YELLOW, JAN, logs.append, run_id="run-r", staged_sha256=staged.sha256
            )
        )
    )
    swap.start()
    time.sleep(1.0)
    # Another reader arrives while the swap waits: it gets its answer within the lock timeout.
    other = psycopg2.connect(pg_url)
    started = time.monotonic()
    with other.cursor() as cur:
        cur.execute("SET statement_timeout = '10s'")
        cur.execute(f"SELECT count(*) FROM {env.final(YELLOW)}")
        row = cur.fetchone()
        assert row is not None and row[0] == old.rows - old.duplicate_rows  # the old month, whole
    other.close()
    assert time.monotonic() - started < 4
    time.sleep(3)
    long_reader.commit()
    long_reader.close()
    swap.join(timeout=60)
    assert outcome["result"].final_rows == reloaded.rows - reloaded.duplicate_rows
    assert any("long readers hold" in m and "trying again" in m for m in logs), logs

    # Readers that never let go: the swap gives up clearly and changes nothing.
    monkeypatch.setattr(postgres_month, "SWAP_ATTEMPTS", 2)
    monkeypatch.setattr(postgres_month, "SWAP_RETRY_SECONDS", 0.1)
    before = env.fingerprint(YELLOW)
    staged = warehouse.load_staging(YELLOW, JAN, _lake_file(path), logs.append, run_id="run-s")
    blocker = psycopg2.connect(pg_url)
    with blocker.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {env.final(YELLOW)}")
    try:
        with pytest.raises(
            WarehouseError, match=r"the swap waited 2 times 2s for readers of .* nothing changed"
        ):
            warehouse.replace_month(YELLOW, JAN, logs.append, run_id="run-s", staged_sha256=staged.sha256)
    finally:
        blocker.rollback()
        blocker.close()
    assert env.fingerprint(YELLOW) == before


def test_another_months_file_under_a_months_name_is_refused(env: Env):
    generate_month(YELLOW, JAN, env.mirror_path(YELLOW, JAN), rows=1_000, seed=26)
    env.materialize(YELLOW, JAN, raise_on_error=True)
    before = env.fingerprint(YELLOW)
    generate_month(YELLOW, FEB, env.mirror_path(YELLOW, JAN), rows=1_000, seed=27)  # February's trips
    result = env.materialize(YELLOW, JAN)
    assert not result.success
    from support.run_results import failure_message

    message = failure_message(result)
    assert "yellow_tripdata_2019-01.csv.gz: only " in message
    assert "were picked up in 2019-01: is it another month's file? Refused" in message
    assert env.fingerprint(YELLOW) == before

    staging = f"{env.settings.staging_schema}.{PostgresWarehouse.month_table_name(YELLOW, JAN)}"
    assert env.query("SELECT to_regclass(%s)", (staging,))[0][0] is None  # rolled back: no table


def test_the_checks_alone_swap_nothing(env: Env, tmp_path):
    # The checks of warehouse/yellow_tripdata selected without the asset (the UI's "Execute" on a
    # check) never swap in the month staged since.
    from taxi_platform.assets.trips import build_trip_assets

    generate_month(YELLOW, JAN, env.mirror_path(YELLOW, JAN), rows=1_000, seed=31)
    env.materialize(YELLOW, JAN, raise_on_error=True)
    other = tmp_path / YELLOW.file_name(JAN)
    generate_month(YELLOW, JAN, other, rows=1_500, seed=32)
    env.warehouse().load_staging(YELLOW, JAN, _lake_file(other), lambda m: None, run_id="run-x")
    before = env.fingerprint(YELLOW)

    assets = build_trip_assets(YELLOW, warehouse_kind="postgres", lake_kind="file", min_in_month_share=0.95)
    job = dg.define_asset_job("checks_only", selection=dg.AssetSelection.checks_for_assets(final_key(YELLOW)))
    defs = dg.Definitions(assets=assets, resources=env.resources, jobs=[job])
    # Dagster 1.13 runs a job of partitioned checks alone without a partition: refused clearly.
    result = defs.resolve_job_def("checks_only").execute_in_process(
        instance=env.instance, raise_on_error=False
    )
    assert not result.success
    assert "warehouse/yellow_tripdata and its checks work on months" in failure_message(result)
    assert result.get_asset_materialization_events() == []
    assert env.fingerprint(YELLOW) == before  # nothing swapped in
