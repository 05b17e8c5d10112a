"""Settings validation, identifier safety, secret masking, the trip id definition."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

from taxi_platform.datasets import YELLOW, ColumnType
from taxi_platform.redact import Redactor, mask_url
from taxi_platform.settings import Settings, SettingsError
from taxi_platform.trip_id import canonical_text, trip_id_from_csv_row, trip_id_from_values
from taxi_platform.warehouse.sql import quote_ident


@pytest.mark.parametrize("variable", ["TAXI_WAREHOUSE_SCHEMA", "TAXI_STAGING_SCHEMA"])
@pytest.mark.parametrize("value", ["x; drop table y", 'a"b', "Taxi", "1abc", "a" * 64, "a-b"])
def test_bad_schema_names_are_refused_naming_the_setting(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as err:
        Settings.from_env()
    assert str(err.value).startswith(f"{variable}={value!r} is not a valid SQL identifier")


def test_good_settings_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("TAXI_HOME", str(tmp_path))
    monkeypatch.setenv("TAXI_WAREHOUSE_SCHEMA", "nyc_taxi")
    monkeypatch.setenv("TAXI_SOURCE_URL", "file:///srv/mirror/")
    monkeypatch.setenv("TAXI_MIN_IN_MONTH_SHARE", "0.9")
    monkeypatch.setenv("TAXI_ENGINE_MEMORY_MB", "512")
    s = Settings.from_env()
    assert (s.home, s.warehouse_schema, s.source_url, s.min_in_month_share, s.engine_memory_mb) == (
        tmp_path, "nyc_taxi", "file:///srv/mirror", 0.9, 512)
    assert s.lake_dir == tmp_path / "lake"


@pytest.mark.parametrize("variable,value,message", [
    ("TAXI_TARGET", "azure", "TAXI_TARGET='azure': choose one of"),
    ("TAXI_SOURCE_URL", "ftp://x", "must start with http://, https:// or file://"),
    ("TAXI_DOWNLOAD_ATTEMPTS", "many", "TAXI_DOWNLOAD_ATTEMPTS='many' is not an integer"),
    ("TAXI_MIN_IN_MONTH_SHARE", "1.5", "TAXI_MIN_IN_MONTH_SHARE=1.5 must lie between"),
    ("TAXI_ENGINE_MEMORY_MB", "16", "TAXI_ENGINE_MEMORY_MB=16 must be at least 64"),
])
def test_other_bad_settings(monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace("*", r"\*")):
        Settings.from_env()


def test_bad_postgres_url_error_masks_the_password(monkeypatch):
    monkeypatch.setenv("TAXI_POSTGRES_URL", "mysql://u:topsecret@h/db")
    with pytest.raises(SettingsError) as err:
        Settings.from_env()
    assert "topsecret" not in str(err.value) and "u:***@h" in str(err.value)


def test_settings_repr_hides_the_url():
    s = Settings(postgres_url="postgresql://u:topsecret@h/db")
    assert "topsecret" not in repr(s)


def test_mask_url_and_redactor():
    assert mask_url("postgresql://u:p%40ss@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert mask_url("https://example.org/x") == "https://example.org/x"
    redact = Redactor(["p@ss"])
    assert redact("failed for p@ss and p%40ss") == "failed for *** and ***"
    assert redact("see postgresql://a:zzz@h/db") == "see postgresql://a:***@h/db"


def test_quote_ident_refuses_anything_but_plain_names():
    assert quote_ident("VendorID") == '"VendorID"'
    for bad in ['a"b', "a b", "a;b", ""]:
        with pytest.raises(ValueError):
            quote_ident(bad)


def test_canonical_forms():
    assert canonical_text(None, ColumnType.INTEGER) == ""
    assert canonical_text(264, ColumnType.INTEGER) == "264"
    assert canonical_text(datetime(2019, 1, 1, 0, 46, 40), ColumnType.TIMESTAMP) == "2019-01-01 00:46:40"
    for raw, canon in [(".20", "0.2"), ("1.50", "1.5"), ("7.00", "7"), ("100", "100"),
                       ("-0.50", "-0.5"), ("0", "0"), (".00", "0"), ("1E+2", "100")]:
        assert canonical_text(Decimal(raw), ColumnType.DECIMAL) == canon


def test_trip_id_is_separator_safe_and_format_insensitive():
    base = "1,2019-01-01 00:46:40,2019-01-01 00:53:20,1,1.50,1,N,151,239,1,7,0.5,0.5,1.65,0,0.3,9.95,"
    row = base.split(",")
    same = list(row)
    same[4], same[10] = "1.5", "7.00"  # trip_distance, fare_amount written differently
    assert trip_id_from_csv_row(YELLOW, row) == trip_id_from_csv_row(YELLOW, same)
    import hashlib
    text = "1|2019-01-01 00:46:40|2019-01-01 00:53:20|151|239|7|1.5"
    assert trip_id_from_csv_row(YELLOW, row) == hashlib.md5(text.encode()).hexdigest()
    # Without a separator, PU=15/DO=1239 and PU=151/DO=239 would hash alike; with it they differ.
    a = dict(zip(YELLOW.identity_columns, [1, datetime(2019, 1, 1), datetime(2019, 1, 1), 15, 1239, 7, 1]))
    b = dict(a, PULocationID=151, DOLocationID=239)
    assert trip_id_from_values(YELLOW, a) != trip_id_from_values(YELLOW, b)
