"""Settings validation, identifier safety, secret masking, the trip id definition."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import cast

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
        tmp_path,
        "nyc_taxi",
        "file:///srv/mirror",
        0.9,
        512,
    )
    assert s.lake_dir == tmp_path / "lake"


@pytest.mark.parametrize(
    "variable,value,message",
    [
        ("TAXI_TARGET", "azure", "TAXI_TARGET='azure': choose one of"),
        ("TAXI_SOURCE_URL", "ftp://x", "must start with http://, https:// or file://"),
        ("TAXI_DOWNLOAD_ATTEMPTS", "many", "TAXI_DOWNLOAD_ATTEMPTS='many' is not an integer"),
        ("TAXI_MIN_IN_MONTH_SHARE", "1.5", "TAXI_MIN_IN_MONTH_SHARE=1.5 must lie between"),
        ("TAXI_ENGINE_MEMORY_MB", "16", "TAXI_ENGINE_MEMORY_MB=16 must be at least 64"),
    ],
)
def test_other_bad_settings(monkeypatch, variable, value, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace("*", r"\*")):
        Settings.from_env()


def test_a_target_names_its_storage_kinds_and_its_dbt_output():
    from pathlib import Path

    import yaml

    from taxi_platform.gcp.settings import GcpSettings
    from taxi_platform.target import GCP, LOCAL, TARGETS, Target

    assert Settings().target is LOCAL
    gcp = GcpSettings(project="my-project-42", gcs_bucket="taxi-lake")
    # names, as TAXI_TARGET gives them: Settings turns them into Targets
    both = Settings(target=cast(Target, "gcp"), compare_target=cast(Target, "local"), gcp=gcp)
    assert (both.target, both.compare_target) == (GCP, LOCAL)
    assert [(t.name, t.warehouse_kind, t.lake_kind, t.dbt_target) for t in TARGETS.values()] == [
        ("local", "postgres", "file", "postgres"),
        ("gcp", "bigquery", "gcs", "bigquery"),
    ]
    # Each target's dbt output exists in the profile dbt is run with.
    profiles = yaml.safe_load((Path(__file__).parents[1] / "dbt_project" / "profiles.yml").read_text())
    assert {t.dbt_target for t in TARGETS.values()} == set(profiles["taxi_platform"]["outputs"])


def test_settings_from_env_are_read_once_per_environment(monkeypatch, tmp_path):
    from taxi_platform.settings import settings_from_env

    monkeypatch.setenv("TAXI_HOME", str(tmp_path / "a"))
    first = settings_from_env()
    assert settings_from_env() is first and first.home == tmp_path / "a"
    monkeypatch.setenv("TAXI_HOME", str(tmp_path / "b"))
    assert settings_from_env().home == tmp_path / "b"


SECRET = "s3cr3t-Pw"
# TAXI_POSTGRES_URL values that are not postgresql:// URLs, each holding the password somewhere.
MALFORMED_POSTGRES_URLS = [
    f"mysql://u:{SECRET}@h/db",
    f"host=db.example port=5432 user=taxi password={SECRET} dbname=taxi",  # libpq keywords
    f"host=db password='{SECRET} x' dbname=taxi",
    f"taxi:{SECRET}@db.example/taxi",  # no scheme
    f"postgresql:/taxi:{SECRET}@db.example/taxi",  # a typo in the scheme
    f"postgresql//taxi:{SECRET}@db.example/taxi",
]


@pytest.mark.parametrize("value", MALFORMED_POSTGRES_URLS)
def test_bad_postgres_url_error_never_echoes_the_value(monkeypatch, value):
    monkeypatch.setenv("TAXI_POSTGRES_URL", value)
    with pytest.raises(SettingsError) as err:
        Settings.from_env()
    message = str(err.value)
    assert SECRET not in message and "db.example" not in message
    assert message.startswith("TAXI_POSTGRES_URL is not a postgresql:// URL")


@pytest.mark.parametrize("value", MALFORMED_POSTGRES_URLS[1:3])
def test_db_status_with_a_keyword_string_prints_no_password(tmp_path, value):
    import subprocess
    import sys
    from pathlib import Path

    cli = Path(sys.executable).with_name("taxi-platform")
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "TAXI_HOME": str(tmp_path / "home"),
        "TAXI_POSTGRES_URL": value,
    }
    done = subprocess.run([str(cli), "db", "status"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert SECRET not in done.stdout + done.stderr
    assert "TAXI_POSTGRES_URL is not a postgresql:// URL" in done.stderr


@pytest.mark.parametrize(
    "text, expected",
    [
        # A token as the URL's user name, or in the query string.
        ("http://ghp_TOKEN123@mirror.example/x.csv.gz", "http://***@mirror.example/x.csv.gz"),
        (
            "https://mirror.example/x.csv.gz?token=ghp_TOKEN123&v=2",
            "https://mirror.example/x.csv.gz?token=***&v=***",
        ),
        (
            "https://u:ghp_TOKEN123@mirror.example/x?sig=ghp_TOKEN123",
            "https://u:***@mirror.example/x?sig=***",
        ),
        # Not URLs at all: masked by shape.
        ("host=h user=taxi password=ghp_TOKEN123 dbname=x", "host=h user=taxi password=*** dbname=x"),
        ("taxi:ghp_TOKEN123@db/x", "taxi:***@db/x"),
        ("postgresql:/taxi:ghp_TOKEN123@db/x", "postgresql:/taxi:***@db/x"),
        ("postgresql://u:pa/ss:ghp_TOKEN123@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:p@ghp_TOKEN123@h/db", "postgresql://u:***@h/db"),  # an unencoded @ in it
    ],
)
def test_mask_url_masks_every_shape_of_secret(text, expected):
    assert mask_url(text) == expected
    assert "ghp_TOKEN123" not in Redactor()(f"failed: {text}.")


def test_settings_repr_hides_the_url():
    s = Settings(postgres_url="postgresql://u:topsecret@h/db")
    assert "topsecret" not in repr(s)


def test_mask_url_and_redactor():
    assert mask_url("postgresql://u:p%40ss@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert mask_url("https://example.org/x") == "https://example.org/x"
    redact = Redactor(["p@ss"])
    assert redact("failed for p@ss and p%40ss") == "failed for *** and ***"
    assert redact("see postgresql://a:zzz@h/db") == "see postgresql://a:***@h/db"


@pytest.mark.parametrize(
    "text",
    [
        "TAXI_DBT_PG_PASSWORD=ghp_TOKEN123 next",
        "DB_PASSWORD=ghp_TOKEN123",
        '{"password": "ghp_TOKEN123"}',
        "password: ghp_TOKEN123",
        "api_key=ghp_TOKEN123&x=1",
        "dsn=postgresql://app:ghp_TOKEN123@h/db",
    ],
)
def test_the_redactor_masks_secrets_in_any_notation(text):
    assert "ghp_TOKEN123" not in Redactor()(text)


def test_the_redactor_takes_linear_time_on_long_texts():
    import time

    started = time.monotonic()
    Redactor(["pw"])("x=" * 50_000 + "a" * 100_000 + " user:pw@host" * 1000)
    assert time.monotonic() - started < 1.0


def test_quote_ident_refuses_anything_but_plain_names():
    assert quote_ident("VendorID") == '"VendorID"'
    for bad in ['a"b', "a b", "a;b", ""]:
        with pytest.raises(ValueError):
            quote_ident(bad)


def test_canonical_forms():
    assert canonical_text(None, ColumnType.INTEGER) == ""
    assert canonical_text(264, ColumnType.INTEGER) == "264"
    assert canonical_text(datetime(2019, 1, 1, 0, 46, 40), ColumnType.TIMESTAMP) == "2019-01-01 00:46:40"
    for raw, canon in [
        (".20", "0.2"),
        ("1.50", "1.5"),
        ("7.00", "7"),
        ("100", "100"),
        ("-0.50", "-0.5"),
        ("0", "0"),
        (".00", "0"),
        ("1E+2", "100"),
    ]:
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
