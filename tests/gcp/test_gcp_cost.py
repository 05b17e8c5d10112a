"""BigQuery cost guardrails on the emulator: every query job carries maximum_bytes_billed from
TAXI_BQ_MAX_BYTES_BILLED (the dbt profile too), the replace records a dry run's estimate, no
per-month table is left but the month's staging table, and a refusal for cost names the setting."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest
from google.api_core import exceptions as gexc
from support.gcp_env import GcpEnv
from support.run_results import materialization_metadata

from taxi_platform.assets.trip_keys import final_key
from taxi_platform.datasets import YELLOW
from taxi_platform.sample.generator import generate_month
from taxi_platform.warehouse.base import WarehouseError
from taxi_platform.warehouse.bigquery_jobs import raise_if_over_budget

JAN = date(2019, 1, 1)
LIMIT = 3 * 10**9


def test_every_query_job_carries_the_byte_limit_and_the_replace_its_estimate(
    gcp_env: GcpEnv, monkeypatch
) -> None:
    from google.cloud import _http

    sent: list[dict] = []  # the job configurations the client sends (a spy: the call goes through)
    original = _http.JSONConnection.api_request

    def spy(self, method, path, *args, **kwargs):
        data = kwargs.get("data")
        if method == "POST" and path.endswith("/jobs") and isinstance(data, dict):
            sent.append(data.get("configuration", {}))
        return original(self, method, path, *args, **kwargs)

    monkeypatch.setattr(_http.JSONConnection, "api_request", spy)
    gcp_env.settings = replace(gcp_env.settings, gcp=replace(gcp_env.gcp, max_bytes_billed=LIMIT))
    generate_month(YELLOW, JAN, gcp_env.mirror_path(YELLOW, JAN), rows=2_000, seed=3)
    result = gcp_env.materialize(YELLOW, JAN, raise_on_error=True)
    final = materialization_metadata(result, final_key(YELLOW))
    assert isinstance(final["bytes_estimated"], int)
    queries = [c for c in sent if "query" in c and not c.get("dryRun")]
    dry_runs = [c for c in sent if "query" in c and c.get("dryRun")]
    assert len(queries) >= 3 and len(dry_runs) == 1  # the id computation, the replace, its counts
    assert {c["query"].get("maximumBytesBilled") for c in queries} == {str(LIMIT)}
    assert dry_runs[0]["query"]["query"].startswith("INSERT INTO")
    assert gcp_env.warehouse().dbt_env()["TAXI_DBT_BQ_MAX_BYTES_BILLED"] == str(LIMIT)
    # The staging dataset holds the month's staging table only (the load table is deleted).
    with gcp_env.bq() as client:
        tables = {
            t.table_id for t in client.list_tables(f"{client.project}.{gcp_env.settings.staging_schema}")
        }
    assert tables == {"yellow_tripdata_2019_01"}
    # ... and that one expires by itself a week after it is created.
    with gcp_env.bq() as client:
        staging = client.get_dataset(f"{client.project}.{gcp_env.settings.staging_schema}")
    assert staging.default_table_expiration_ms == 7 * 24 * 3600 * 1000


def test_a_refusal_for_cost_names_the_setting() -> None:
    refused = gexc.BadRequest(
        "Query exceeded limit for bytes billed: 10485760. 20971520 or higher required.",
        errors=[{"reason": "bytesBilledLimitExceeded", "message": "Query exceeded limit for bytes billed"}],
    )
    with pytest.raises(WarehouseError) as info:
        raise_if_over_budget(refused, None, 10485760)
    assert str(info.value).startswith(
        "a query would bill more than TAXI_BQ_MAX_BYTES_BILLED=10,485,760 bytes and was not run"
    )
    raise_if_over_budget(gexc.BadRequest("syntax error", errors=[{"reason": "invalidQuery"}]), None, 1)
