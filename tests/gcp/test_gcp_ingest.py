"""The GCP target on the emulators: GCS lake, BigQuery staging and per-month replace, parity of
the trip ids with PostgreSQL, idempotency, bad input, cost metadata, no credential leaks."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

from support.expected import (
    csv_lines,
    expected_from_file,
    gzip_csv,
    read_gz,
    write_gz,
)
from support.gcp_env import GcpEnv
from support.paths import REAL_SAMPLES
from support.run_results import failure_message, materialization_metadata

from taxi_platform.assets.trip_keys import final_key, raw_file_key, staging_key
from taxi_platform.datasets import GREEN, YELLOW
from taxi_platform.sample.generator import generate_month

JAN, FEB, MAR = date(2019, 1, 1), date(2019, 2, 1), date(2019, 3, 1)


def test_month_gives_exactly_the_expected_trips(gcp_env: GcpEnv):
    generated = generate_month(YELLOW, JAN, gcp_env.mirror_path(YELLOW, JAN), rows=20_000, seed=7)
    expected = expected_from_file(YELLOW, generated.path)
    size = generated.path.stat().st_size

    result = gcp_env.materialize(YELLOW, JAN, raise_on_error=True)

    ids = gcp_env.ids(YELLOW, JAN)
    assert len(ids) == expected.distinct and set(ids) == set(expected.ids)
    raw = materialization_metadata(result, raw_file_key(YELLOW))
    staging = materialization_metadata(result, staging_key(YELLOW))
    final = materialization_metadata(result, final_key(YELLOW))
    bucket = gcp_env.gcp.gcs_bucket
    assert raw["lake_uri"] == f"gs://{bucket}/yellow/yellow_tripdata_2019-01.csv.gz"
    assert raw["bytes"] == size and len(raw["sha256"]) == 64
    assert staging["source_file"] == raw["lake_uri"]
    assert staging["dagster/row_count"] == expected.rows
    assert final["dagster/row_count"] == expected.distinct
    assert final["duplicates_dropped"] == expected.duplicates
    assert final["dagster/table_name"] == f"test-project.{gcp_env.gcp.bq_dataset}.yellow_tripdata"
    # Cost visibility: what the emulator reports (0 processed; billed is not reported there).
    assert isinstance(staging["bytes_processed"], int) and isinstance(final["bytes_processed"], int)
    # The object in the lake is the verified file, byte for byte.
    blob = gcp_env.gcs_client().bucket(bucket).get_blob("yellow/yellow_tripdata_2019-01.csv.gz")
    assert blob.size == size and blob.download_as_bytes() == generated.path.read_bytes()
    fare_index = YELLOW.csv_columns.index("fare_amount")
    expected_fares = sum(Decimal(r[fare_index]) for r in expected.ids.values() if r[fare_index])
    assert gcp_env.query(f"SELECT SUM(fare_amount) FROM {gcp_env.final(YELLOW)}")[0][0] == expected_fares
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {
        "unique_row_id_is_unique": True,
        "has_rows": True,
        "pickups_in_month": True,
        "rows_match_file": True,
    }


# --- parity with PostgreSQL --------------------------------------------------------------------


def _pg_ids(env, spec, month) -> list[str]:
    return [
        r[0]
        for r in env.query(
            f"SELECT unique_row_id FROM {env.final(spec)} WHERE filename = %s", (spec.file_name(month),)
        )
    ]


def _load_on_both(env, gcp_env: GcpEnv, spec, month, write) -> None:
    for mirror in (env.mirror_path(spec, month), gcp_env.mirror_path(spec, month)):
        write(mirror)
    env.materialize(spec, month, raise_on_error=True)
    gcp_env.materialize(spec, month, raise_on_error=True)


def test_parity_generated_months_same_counts_and_ids(env, gcp_env: GcpEnv):
    cases = [(YELLOW, JAN, 5_000, 11), (YELLOW, FEB, 3_000, 12), (GREEN, JAN, 3_000, 13)]
    for spec, month, rows, seed in cases:
        _load_on_both(
            env, gcp_env, spec, month, lambda path: generate_month(spec, month, path, rows=rows, seed=seed)
        )
    for spec, month, _, _ in cases:
        pg, bq = _pg_ids(env, spec, month), gcp_env.ids(spec, month)
        assert len(pg) == len(bq) > 0
        assert set(pg) == set(bq)


def test_parity_real_yellow_samples_same_counts_and_ids(env, gcp_env: GcpEnv):
    samples = [
        (date(2021, 1, 1), "yellow_tripdata_2021-01.head22791.csv"),
        (date(2020, 1, 1), "yellow_tripdata_2020-01.head499_tail500.crlf.csv"),
    ]
    for month, name in samples:
        _load_on_both(env, gcp_env, YELLOW, month, lambda path: gzip_csv(REAL_SAMPLES / name, path))
    for month, name in samples:
        expected = expected_from_file(YELLOW, REAL_SAMPLES / name)
        pg, bq = _pg_ids(env, YELLOW, month), gcp_env.ids(YELLOW, month)
        assert len(pg) == len(bq) == expected.distinct
        assert set(pg) == set(bq) == set(expected.ids)
    # Values survive: the 2020-01 unattributed tail block (every vendor field empty) is NULL there too.
    tail = gcp_env.query(
        f"SELECT COUNT(*) FROM {gcp_env.final(YELLOW)} WHERE filename = 'yellow_tripdata_2020-01.csv.gz' "
        "AND VendorID IS NULL AND passenger_count IS NULL AND RatecodeID IS NULL "
        "AND store_and_fwd_flag IS NULL AND payment_type IS NULL"
    )[0][0]
    assert tail == 500
    flags = dict(
        gcp_env.query(
            f"SELECT store_and_fwd_flag, COUNT(*) FROM {gcp_env.final(YELLOW)} "
            "WHERE filename = 'yellow_tripdata_2021-01.csv.gz' GROUP BY 1"
        )
    )
    assert flags == {"N": 22_407, "Y": 384}


# --- idempotency and per-month replace -----------------------------------------------------------


def test_same_month_twice_gives_identical_contents(gcp_env: GcpEnv):
    generate_month(YELLOW, JAN, gcp_env.mirror_path(YELLOW, JAN), rows=3_000, seed=1)
    gcp_env.materialize(YELLOW, JAN, raise_on_error=True)
    first = gcp_env.fingerprint(YELLOW)
    result = gcp_env.materialize(YELLOW, JAN, raise_on_error=True)
    assert gcp_env.fingerprint(YELLOW) == first
    assert materialization_metadata(result, final_key(YELLOW))["previous_rows"] == str(len(first))


def test_corrected_file_replaces_that_month_only(gcp_env: GcpEnv):
    env = gcp_env
    path = env.mirror_path(YELLOW, JAN)
    generate_month(YELLOW, JAN, path, rows=3_000, seed=5)
    generate_month(YELLOW, FEB, env.mirror_path(YELLOW, FEB), rows=1_000, seed=6)
    for month in (FEB, JAN):  # order does not matter
        env.materialize(YELLOW, month, raise_on_error=True)
    feb_before = sorted(env.ids(YELLOW, FEB))

    lines = csv_lines(read_gz(path))
    header, body = lines[0], lines[1:]
    changed = body[10].split(b",")
    changed[YELLOW.csv_columns.index("fare_amount")] = b"123.45"
    write_gz(path, b"".join([header] + body[:10] + [b",".join(changed)] + body[11:-100]))
    expected = expected_from_file(YELLOW, path)

    env.materialize(YELLOW, JAN, raise_on_error=True)
    jan = env.ids(YELLOW, JAN)
    assert len(jan) == expected.distinct and set(jan) == set(expected.ids)
    assert sorted(env.ids(YELLOW, FEB)) == feb_before


# --- a failure leaves the final table as it was (damaged files: tests/test_failures.py) ----------


def test_a_failure_inside_the_replace_transaction_rolls_back(gcp_env: GcpEnv):
    """The DELETE of the month runs, then the INSERT fails: the month keeps its previous rows."""
    env = gcp_env
    generate_month(YELLOW, JAN, env.mirror_path(YELLOW, JAN), rows=2_000, seed=3)
    env.materialize(YELLOW, JAN, raise_on_error=True)
    before = env.fingerprint(YELLOW)
    assert before
    # A staging table whose fare_amount is text that is no number: the INSERT's cast fails.
    staging = f"`test-project.{env.settings.staging_schema}.yellow_tripdata_2019_01`"
    env.query(f"CREATE OR REPLACE TABLE {staging} AS SELECT * REPLACE ('x' AS fare_amount) FROM {staging}")
    import pytest

    from taxi_platform.warehouse.base import WarehouseError

    with pytest.raises(WarehouseError, match="replace yellow_tripdata_2019-01.csv.gz failed"):
        env.warehouse().replace_month(YELLOW, JAN, lambda m: None)
    assert env.fingerprint(YELLOW) == before


# --- a range of months in one run ----------------------------------------------------------------


def test_a_range_run_goes_through_the_gcs_lake_month_by_month(gcp_env: GcpEnv):
    """Apr..Jul 2021 in one run of a dataset known up to 2021-05 (the partitions end at 2021-07):
    Apr and May load (objects in the bucket, rows per month in BigQuery, each partition's own
    metadata); Jun and Jul are not published (404) and skipped."""
    apr, may, jun, jul = (date(2021, m, 1) for m in (4, 5, 6, 7))
    known_until_may = replace(YELLOW, last_published=date(2021, 5, 1))
    expected = {}
    for i, month in enumerate((apr, may)):
        path = generate_month(
            YELLOW, month, gcp_env.mirror_path(YELLOW, month), rows=800 + 300 * i, seed=60 + i
        ).path
        expected[f"{month:%Y-%m-01}"] = (expected_from_file(YELLOW, path).distinct, path.read_bytes())

    result = gcp_env.materialize_range(known_until_may, apr, jul)

    assert result.success, failure_message(result)
    bucket = gcp_env.gcs_client().bucket(gcp_env.gcp.gcs_bucket)
    events = {}
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        events[(mat.asset_key, mat.partition)] = {k: v.value for k, v in mat.metadata.items()}
    for partition, (distinct, data) in expected.items():
        file_name = YELLOW.file_name(date.fromisoformat(partition))
        assert bucket.get_blob(f"yellow/{file_name}").download_as_bytes() == data
        raw = events[(raw_file_key(YELLOW), partition)]
        assert raw["lake_key"] == f"yellow/{file_name}" and raw["bytes"] == len(data)
        assert raw["lake_root"] == f"gs://{gcp_env.gcp.gcs_bucket}"
        assert events[(final_key(YELLOW), partition)]["dagster/row_count"] == distinct
        assert (
            events[(staging_key(YELLOW), partition)]["source_file"]
            == f"gs://{gcp_env.gcp.gcs_bucket}/yellow/{file_name}"
        )
    for month in (jun, jul):
        assert bucket.get_blob(f"yellow/{YELLOW.file_name(month)}") is None
        assert events[(final_key(YELLOW), f"{month:%Y-%m-01}")].get("not_published") is True
    counts = dict(gcp_env.query(f"SELECT filename, COUNT(*) FROM {gcp_env.final(YELLOW)} GROUP BY filename"))
    assert counts == {YELLOW.file_name(date.fromisoformat(p)): d for p, (d, _) in expected.items()}
