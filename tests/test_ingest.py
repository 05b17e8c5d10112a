"""Monthly ingest through real Dagster materializations into the real (embedded) PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest
from support.expected import (
    csv_lines,
    expected_from_file,
    gzip_csv,
    read_gz,
    write_gz,
)
from support.paths import REAL_SAMPLES
from support.pg_env import Env
from support.pg_faults import materialize_killing_copy
from support.run_results import failure_message, materialization_metadata

from taxi_platform.assets.trip_keys import final_key, raw_file_key, staging_key
from taxi_platform.datasets import GREEN, YELLOW
from taxi_platform.sample.generator import generate_month

JAN, FEB, MAR = date(2019, 1, 1), date(2019, 2, 1), date(2019, 3, 1)


def _ids_in_table(env: Env, spec, month: date) -> list[str]:
    return [
        r[0]
        for r in env.query(
            f"SELECT unique_row_id FROM {env.final(spec)} WHERE filename = %s", (spec.file_name(month),)
        )
    ]


def test_month_gives_exactly_the_expected_trips(env: Env):
    generated = generate_month(YELLOW, JAN, env.mirror_path(YELLOW, JAN), rows=20_000, seed=7)
    expected = expected_from_file(YELLOW, generated.path)
    assert generated.duplicate_rows > 0 and expected.duplicates >= generated.duplicate_rows

    result = env.materialize(YELLOW, JAN, raise_on_error=True)

    ids = _ids_in_table(env, YELLOW, JAN)
    assert len(ids) == expected.distinct
    assert set(ids) == set(expected.ids)
    raw = materialization_metadata(result, raw_file_key(YELLOW))
    final = materialization_metadata(result, final_key(YELLOW))
    assert raw["rows"] == expected.rows == 20_000
    assert final["dagster/row_count"] == expected.distinct
    assert final["duplicates_dropped"] == expected.duplicates
    # Values survive typed: the sum of fares equals the file's, to the cent.
    fare_index = YELLOW.csv_columns.index("fare_amount")
    from decimal import Decimal

    expected_fares = sum(Decimal(r[fare_index]) for r in expected.ids.values() if r[fare_index])
    (fares,) = env.query(f"SELECT sum(fare_amount) FROM {env.final(YELLOW)}")[0]
    assert fares == expected_fares
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {
        "unique_row_id_is_unique": True,
        "has_rows": True,
        "pickups_in_month": True,
        "rows_match_file": True,
    }


def test_green_month_and_filename_column(env: Env):
    generated = generate_month(GREEN, FEB, env.mirror_path(GREEN, FEB), rows=5_000, seed=3)
    expected = expected_from_file(GREEN, generated.path)
    assert expected.duplicates > 0
    # Staging alone: the month's typed rows, first occurrences only, each with its file name.
    result = env.run([raw_file_key(GREEN), staging_key(GREEN)], FEB)
    staging_table = f'"{env.settings.staging_schema}"."green_tripdata_2019_02"'
    staging = env.query(
        f"SELECT count(*), count(DISTINCT unique_row_id), min(filename), max(filename) FROM {staging_table}"
    )[0]
    assert staging == (
        expected.distinct,
        expected.distinct,
        "green_tripdata_2019-02.csv.gz",
        "green_tripdata_2019-02.csv.gz",
    )
    metadata = materialization_metadata(result, staging_key(GREEN))
    assert (metadata["rows_read"], metadata["duplicates_dropped"], metadata["dagster/row_count"]) == (
        expected.rows,
        expected.duplicates,
        expected.distinct,
    )
    assert set(r[0] for r in env.query(f"SELECT unique_row_id FROM {staging_table}")) == set(expected.ids)

    # The final step attaches that very table as the month's partition.
    env.materialize(GREEN, FEB, raise_on_error=True)
    rows = env.query(f"SELECT filename, count(*) FROM {env.final(GREEN)} GROUP BY 1")
    assert rows == [("green_tripdata_2019-02.csv.gz", expected.distinct)]


def test_real_yellow_2021_01_head_loads_with_right_counts(env: Env):
    src = REAL_SAMPLES / "yellow_tripdata_2021-01.head22791.csv"
    month = date(2021, 1, 1)
    gzip_csv(src, env.mirror_path(YELLOW, month))
    expected = expected_from_file(YELLOW, src)
    result = env.materialize(YELLOW, month, raise_on_error=True)
    assert materialization_metadata(result, raw_file_key(YELLOW))["rows"] == 22_791
    assert len(_ids_in_table(env, YELLOW, month)) == expected.distinct
    assert set(_ids_in_table(env, YELLOW, month)) == set(expected.ids)
    # PROVENANCE.md: 16 rows dated 2020-12-31, store_and_fwd_flag N=22,407 / Y=384.
    assert (
        env.query(f"SELECT count(*) FROM {env.final(YELLOW)} WHERE tpep_pickup_datetime < '2021-01-01'")[0][0]
        == 16
    )
    flags = dict(env.query(f"SELECT store_and_fwd_flag, count(*) FROM {env.final(YELLOW)} GROUP BY 1"))
    assert flags == {"N": 22_407, "Y": 384}


def test_real_yellow_2020_01_crlf_with_empty_vendor_tail(env: Env):
    src = REAL_SAMPLES / "yellow_tripdata_2020-01.head499_tail500.crlf.csv"
    month = date(2020, 1, 1)
    gzip_csv(src, env.mirror_path(YELLOW, month))
    expected = expected_from_file(YELLOW, src)
    result = env.materialize(YELLOW, month, raise_on_error=True)
    raw = materialization_metadata(result, raw_file_key(YELLOW))
    assert raw["rows"] == 999 and raw["line_ending"] == "CRLF"
    assert set(_ids_in_table(env, YELLOW, month)) == set(expected.ids)
    counts = env.query(
        f'SELECT count(*), count(*) FILTER (WHERE "VendorID" IS NULL AND passenger_count IS NULL '
        f'AND "RatecodeID" IS NULL AND store_and_fwd_flag IS NULL AND payment_type IS NULL), '
        f"count(*) FILTER (WHERE tpep_pickup_datetime < '2020-01-01') FROM {env.final(YELLOW)}"
    )[0]
    assert counts[0] == expected.distinct
    assert counts[1] == 500  # the unattributed tail block, all distinct trips
    assert counts[2] > 0  # out-of-month rows of the head (2019-12-18)
    # No CR survives into text values.
    assert (
        env.query(
            f"SELECT count(*) FROM {env.final(YELLOW)} WHERE store_and_fwd_flag LIKE '%%' || chr(13) || '%%'"
        )[0][0]
        == 0
    )


def test_same_month_twice_gives_identical_contents(env: Env):
    generate_month(YELLOW, JAN, env.mirror_path(YELLOW, JAN), rows=3_000, seed=1)
    env.materialize(YELLOW, JAN, raise_on_error=True)
    first = env.fingerprint(YELLOW)
    result = env.materialize(YELLOW, JAN, raise_on_error=True)
    assert env.fingerprint(YELLOW) == first
    assert materialization_metadata(result, final_key(YELLOW))["previous_rows"] == str(len(first))


def test_month_order_does_not_matter_and_other_months_are_untouched(env: Env):
    for i, month in enumerate((JAN, FEB, MAR)):
        generate_month(YELLOW, month, env.mirror_path(YELLOW, month), rows=2_000, seed=i)
    for month in (MAR, JAN, FEB):
        env.materialize(YELLOW, month, raise_on_error=True)
    state_a = env.fingerprint(YELLOW)
    env.query(f"TRUNCATE {env.final(YELLOW)}")
    for month in (JAN, FEB, MAR):
        env.materialize(YELLOW, month, raise_on_error=True)
    assert env.fingerprint(YELLOW) == state_a

    def partition_state(month):
        table = f"{env.settings.warehouse_schema}.yellow_tripdata_{month:%Y_%m}"
        return env.query(
            f"SELECT pg_relation_filenode(%s::regclass), (SELECT count(*) FROM {table})", (table,)
        )[0]

    jan, mar = partition_state(JAN), partition_state(MAR)
    env.materialize(YELLOW, FEB, raise_on_error=True)
    # Re-loading February rewrites only February's partition: the others keep their files.
    assert partition_state(JAN) == jan and partition_state(MAR) == mar
    assert env.fingerprint(YELLOW) == state_a


def test_corrected_file_replaces_the_months_rows_exactly(env: Env):
    path = env.mirror_path(YELLOW, JAN)
    generate_month(YELLOW, JAN, path, rows=3_000, seed=5)
    generate_month(YELLOW, FEB, env.mirror_path(YELLOW, FEB), rows=1_000, seed=6)
    env.materialize(YELLOW, JAN, raise_on_error=True)
    env.materialize(YELLOW, FEB, raise_on_error=True)
    feb_before = _ids_in_table(env, YELLOW, FEB)

    lines = csv_lines(read_gz(path))
    header, body = lines[0], lines[1:]
    # Correction: 100 rows removed, one fare changed.
    changed = body[10].split(b",")
    changed[YELLOW.csv_columns.index("fare_amount")] = b"123.45"
    corrected = [header] + body[:10] + [b",".join(changed)] + body[11:-100]
    write_gz(path, b"".join(corrected))
    expected = expected_from_file(YELLOW, path)

    env.materialize(YELLOW, JAN, raise_on_error=True)
    assert sorted(_ids_in_table(env, YELLOW, JAN)) == sorted(expected.ids)
    assert sorted(_ids_in_table(env, YELLOW, FEB)) == sorted(feb_before)
    assert env.query(f"SELECT count(*) FROM {env.final(YELLOW)} WHERE fare_amount = 123.45")[0][0] >= 1


def test_duplicates_inside_a_file_are_dropped_and_counted(env: Env):
    path = env.mirror_path(GREEN, JAN)
    generate_month(GREEN, JAN, path, rows=1_000, seed=2)
    lines = csv_lines(read_gz(path))
    # Three more copies of row 5 and one of row 7, appended at the end.
    write_gz(path, b"".join(lines + [lines[5]] * 3 + [lines[7]]))
    expected = expected_from_file(GREEN, path)
    result = env.materialize(GREEN, JAN, raise_on_error=True)
    meta = materialization_metadata(result, final_key(GREEN))
    assert meta["duplicates_dropped"] == expected.duplicates >= 4
    assert meta["dagster/row_count"] == expected.distinct
    assert env.query(f"SELECT count(*) - count(DISTINCT unique_row_id) FROM {env.final(GREEN)}")[0][0] == 0


# --- bad input: clear error, final table exactly as before (damaged files: test_failures.py) -----


def test_404_in_published_range_fails_naming_url_and_month(env: Env):
    generate_month(YELLOW, JAN, env.mirror_path(YELLOW, JAN), rows=500, seed=1)
    env.materialize(YELLOW, JAN, raise_on_error=True)
    before = env.fingerprint(YELLOW)
    env.mirror_path(YELLOW, JAN).unlink()
    result = env.materialize(YELLOW, JAN)
    assert not result.success
    message = failure_message(result)
    assert "yellow 2019-01" in message and "yellow/yellow_tripdata_2019-01.csv.gz" in message
    assert "404" in message
    assert env.fingerprint(YELLOW) == before


def test_unpublished_month_is_skipped_with_a_clear_message(env: Env):
    # A partition (the source's months end at 2021-07) after the dataset's last published month:
    # a dataset known only up to 2021-05, as fhv is known up to 2019-12.
    known_until_may = replace(YELLOW, last_published=date(2021, 5, 1))
    result = env.materialize(known_until_may, date(2021, 7, 1))
    assert result.success
    assert result.get_asset_materialization_events() == []
    logs = [r.user_message for r in env.instance.all_logs(result.run_id)]
    assert any(
        m.startswith("yellow 2021-07 is not published yet: ")
        and "answered 404" in m
        and "the latest month known to be published is 2021-05" in m
        for m in logs
    ), logs


# --- concurrency and failures ------------------------------------------------------------------


@pytest.mark.slow  # two `dagster asset materialize` processes: 10-15 s
def test_two_loads_of_the_same_month_at_once(env: Env):
    # Two `dagster asset materialize` processes, as two runs launched at once would be.
    path = env.mirror_path(YELLOW, JAN)
    generate_month(YELLOW, JAN, path, rows=100_000, seed=9)
    expected = expected_from_file(YELLOW, path)
    procs = [env.cli_materialize(YELLOW, JAN) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    ids = _ids_in_table(env, YELLOW, JAN)
    assert len(ids) == len(set(ids)) == expected.distinct
    assert set(ids) == set(expected.ids)


def test_connection_dropped_mid_load_keeps_previous_rows_and_rerun_succeeds(env: Env, pg):
    path = env.mirror_path(YELLOW, JAN)
    generate_month(YELLOW, JAN, path, rows=2_000, seed=4)
    env.materialize(YELLOW, JAN, raise_on_error=True)
    before = env.fingerprint(YELLOW)

    # Big enough to be caught mid-COPY; the generator's duplicate count is exact (see its tests).
    big = generate_month(YELLOW, JAN, path, rows=400_000, seed=5)
    result, killed = materialize_killing_copy(env, pg, YELLOW, JAN, "taxi_platform:staging%")
    assert killed == 1
    assert not result.success
    message = failure_message(result)
    assert "lost the connection to PostgreSQL during staging yellow_tripdata_2019-01.csv.gz" in message
    assert env.fingerprint(YELLOW) == before

    env.materialize(YELLOW, JAN, raise_on_error=True)
    assert len(_ids_in_table(env, YELLOW, JAN)) == big.rows - big.duplicate_rows


def test_no_password_reaches_logs_metadata_or_errors(env: Env, pg, monkeypatch):
    password = "Pa55-w0rd_that-must-not-leak"
    role = f"leaktest_{env.settings.warehouse_schema}"
    with pg.cursor() as cur:
        cur.execute(f'CREATE ROLE "{role}" LOGIN SUPERUSER PASSWORD %s', (password,))
    url = env.pg_url.replace(env.pg_url.split("//")[1].split("@")[0], f"{role}:{password}")
    monkeypatch.setenv("TAXI_POSTGRES_URL", url)
    from dataclasses import replace

    env.settings = replace(env.settings, postgres_url=url)

    generate_month(YELLOW, JAN, env.mirror_path(YELLOW, JAN), rows=500, seed=1)
    good = env.materialize(YELLOW, JAN, raise_on_error=True)
    # A failing run whose error comes from the database connection itself.
    env.query(f'ALTER ROLE "{role}" NOLOGIN')
    bad = env.materialize(YELLOW, JAN)
    assert not bad.success
    assert "cannot connect to PostgreSQL" in failure_message(bad)

    texts = []
    for result in (good, bad):
        for record in env.instance.all_logs(result.run_id):
            texts.append(str(record))
    texts.append(str(env.instance.get_run_by_id(good.run_id)))
    haystack = "\n".join(texts)
    assert "cannot connect to PostgreSQL" in haystack  # the error did reach the event log
    assert password not in haystack
    assert password.replace("-", "%2D") not in haystack


def test_long_downloads_and_loads_log_their_progress(env: Env, monkeypatch):
    import taxi_platform.source.download as download
    import taxi_platform.source.http_stream as http_stream
    import taxi_platform.warehouse.postgres_copy as postgres_copy

    monkeypatch.setattr(download, "PROGRESS_EVERY_SECONDS", 0.0)
    monkeypatch.setattr(postgres_copy, "PROGRESS_EVERY_SECONDS", 0.0)
    monkeypatch.setattr(http_stream, "CHUNK", 64 * 1024)
    generate_month(YELLOW, JAN, env.mirror_path(YELLOW, JAN), rows=50_000, seed=3)
    result = env.materialize(YELLOW, JAN, raise_on_error=True)
    logs = [r.user_message for r in env.instance.all_logs(result.run_id)]
    downloads = [m for m in logs if "bytes downloaded" in m]
    loads = [m for m in logs if "MB loaded, about" in m]
    assert len(downloads) >= 3 and downloads[0].startswith("yellow 2019-01: ")
    assert loads and loads[-1].endswith(" rows")
