"""Bad input on both warehouses: a damaged release file fails its month with an error naming the
file (and the line, row or column), and the final table is exactly as it was. Every test runs on
PostgreSQL (the session's embedded server) and on BigQuery (the emulators, whose venv the session
installs when it is missing, as for tests/gcp)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support.expected import cut_row, read_gz, set_value, truncate_gzip, write_gz
from support.parquet_files import (
    REAL_PARQUET,
    expected_trips,
    green_table,
    lake_file,
    load,
    parquet_spec,
    write,
)
from support.run_results import failure_message

from taxi_platform.datasets import YELLOW
from taxi_platform.sample.generator import generate_month
from taxi_platform.warehouse.base import BadInputError

JAN = date(2019, 1, 1)


def _load_good_then(env, corrupt) -> tuple[str, list, list]:
    """Load a good January, damage its file with `corrupt`, load again: the failure's message,
    and the final table before and after."""
    path = env.mirror_path(YELLOW, JAN)
    generate_month(YELLOW, JAN, path, rows=2_000, seed=11)
    env.materialize(YELLOW, JAN, raise_on_error=True)
    before = env.fingerprint(YELLOW)
    corrupt(path)
    result = env.materialize(YELLOW, JAN)
    assert not result.success
    return failure_message(result), before, env.fingerprint(YELLOW)


# --- the course's CSV files -----------------------------------------------------------------------


def test_truncated_gzip_fails_before_anything_changes(target_env):
    message, before, after = _load_good_then(target_env, truncate_gzip)
    assert "yellow_tripdata_2019-01.csv.gz" in message and "ends early" in message
    assert after == before


def test_header_with_a_renamed_column_fails(target_env):
    def rename(path):
        write_gz(path, read_gz(path).replace(b"fare_amount", b"fare", 1))

    message, before, after = _load_good_then(target_env, rename)
    assert "yellow_tripdata_2019-01.csv.gz line 1" in message
    assert "missing fare_amount" in message and "unexpected fare" in message
    assert after == before


def test_header_with_a_missing_column_fails(target_env):
    def drop(path):
        write_gz(path, read_gz(path).replace(b",congestion_surcharge", b"", 1))

    message, before, after = _load_good_then(target_env, drop)
    assert "line 1" in message and "missing congestion_surcharge" in message
    assert after == before


def test_row_with_too_few_fields_fails_naming_the_line(target_env):
    message, before, after = _load_good_then(target_env, lambda path: cut_row(path, line=42, keep=14))
    assert "yellow_tripdata_2019-01.csv.gz line 42: 14 fields, expected 18" in message
    assert after == before


# Where each target finds a value that is no number: PostgreSQL's COPY names the file's line and
# column; BigQuery's load job names the file.
NON_NUMERIC_NAMED = {
    "postgres": "yellow_tripdata_2019-01.csv.gz line 100, column tip_amount",
    "bigquery": "yellow_tripdata_2019-01.csv.gz: ",
}


def test_non_numeric_value_fails_naming_the_file(target_env, target: str):
    message, before, after = _load_good_then(
        target_env, lambda path: set_value(path, YELLOW, line=100, column="tip_amount", value=b"abc")
    )
    assert NON_NUMERIC_NAMED[target] in message
    assert "abc" in message
    assert after == before


# --- the TLC's Parquet files ----------------------------------------------------------------------


def test_a_double_that_is_not_whole_is_refused_naming_row_and_column(
    target_env, target: str, tmp_path: Path
) -> None:
    spec, month = parquet_spec("green"), date(2023, 4, 1)
    good = REAL_PARQUET / "green_tripdata_2023-04.parquet"
    load(target_env, spec, month, good)
    before = target_env.fingerprint(spec)
    counts = pq.read_table(good).column("passenger_count").slice(0, 500)
    values = counts.cast(pa.float64()).to_pylist()
    values[41] = 1.5
    bad = write(green_table(passenger_count=pa.array(values)), tmp_path)

    with pytest.raises(BadInputError, match="row 42") as info:
        target_env.warehouse().load_staging(spec, month, lake_file(bad), lambda _m: None, run_id="bad")

    assert str(info.value).startswith(
        "green_tripdata_2023-04.parquet row 42, column passenger_count: 1.5 is not an integer"
    )
    assert target_env.fingerprint(spec) == before
    # Nothing staged: on PostgreSQL the good load's staging table is the swapped-in partition (no
    # staging table left); on BigQuery the staging table still holds the good month.
    if target == "postgres":
        staging = f"{target_env.settings.staging_schema}.green_tripdata_2023_04"
        assert target_env.query("SELECT to_regclass(%s)", (staging,))[0][0] is None
    else:
        (staged,) = target_env.query(
            f"SELECT COUNT(*) FROM `{target_env.gcp.project}.{target_env.settings.staging_schema}"
            ".green_tripdata_2023_04`"
        )[0]
        assert staged == len(expected_trips(spec, good, None)[0])
