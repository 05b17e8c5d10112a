"""The switch (TAXI_TARGET) and the GCP settings: validation, credentials errors that name the
setting and never the key, and the same Definitions on both targets."""

from __future__ import annotations

import base64
import json
from datetime import date
from typing import cast

import pytest
from support.gcp_emulators import PROJECT
from support.gcp_env import GcpEnv
from support.run_results import failure_message

from taxi_platform.datasets import YELLOW
from taxi_platform.gcp.settings import GcpSettings
from taxi_platform.sample.generator import generate_month
from taxi_platform.settings import Settings, SettingsError
from taxi_platform.target import GCP

GCP_ENV = {
    "TAXI_TARGET": "gcp",
    "TAXI_GCP_PROJECT": "my-project-42",
    "TAXI_GCS_BUCKET": "taxi-lake",
    "TAXI_BQ_DATASET": "nyc_taxi",
}


def _fake_key(token_uri: str = "http://127.0.0.1:1/token") -> dict:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )
    return {
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "abc123",
        "private_key": pem,
        "client_email": f"loader@{PROJECT}.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    }


@pytest.fixture
def gcp_vars(monkeypatch):
    for key, value in GCP_ENV.items():
        monkeypatch.setenv(key, value)
    for key in ("TAXI_GCP_CREDENTIALS_FILE", "TAXI_GCP_CREDENTIALS_B64", "TAXI_GCP_ANONYMOUS"):
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def test_gcp_settings_from_env(gcp_vars, tmp_path):
    key = tmp_path / "key.json"
    key.write_text(json.dumps(_fake_key()))
    gcp_vars.setenv("TAXI_GCP_CREDENTIALS_FILE", str(key))
    gcp_vars.setenv("TAXI_GCP_LOCATION", "europe-west1")
    s = Settings.from_env()
    assert s.target is GCP
    assert s.gcp is not None
    assert (s.gcp.project, s.gcp.gcs_bucket, s.gcp.bq_dataset, s.gcp.location, s.gcp.credentials_file) == (
        "my-project-42",
        "taxi-lake",
        "nyc_taxi",
        "europe-west1",
        str(key),
    )


@pytest.mark.parametrize(
    "variable,value,message",
    [
        ("TAXI_GCP_PROJECT", "My_Project", "TAXI_GCP_PROJECT='My_Project' is not a GCP project id"),
        ("TAXI_GCP_PROJECT", "", "TAXI_GCP_PROJECT='' is not a GCP project id"),
        ("TAXI_GCS_BUCKET", "gs://taxi-lake", "TAXI_GCS_BUCKET='gs://taxi-lake' is not a valid bucket name"),
        ("TAXI_GCS_BUCKET", "google-taxi", "is not a valid bucket name"),
        ("TAXI_GCS_BUCKET", "ab", "is not a valid bucket name"),
        ("TAXI_BQ_DATASET", "taxi; drop", "TAXI_BQ_DATASET='taxi; drop' is not a valid SQL identifier"),
        ("TAXI_BQ_DATASET", "taxi_staging", "TAXI_BQ_DATASET must differ from TAXI_STAGING_SCHEMA"),
        ("TAXI_GCP_LOCATION", "us central", "TAXI_GCP_LOCATION='us central' is not a location"),
        ("TAXI_GCP_ANONYMOUS", "maybe", "TAXI_GCP_ANONYMOUS='maybe'"),
        ("TAXI_BQ_API_ENDPOINT", "127.0.0.1:9050", "TAXI_BQ_API_ENDPOINT='127.0.0.1:9050' must be http(s)"),
    ],
)
def test_bad_gcp_settings_name_the_setting(gcp_vars, variable, value, message):
    gcp_vars.setenv(variable, value)
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings.from_env()


def test_missing_or_malformed_credentials_name_the_setting_never_the_key(gcp_vars, tmp_path):
    key = _fake_key()
    secret = key["private_key"].splitlines()[1]
    cases = []
    gcp_vars.setenv("TAXI_GCP_CREDENTIALS_FILE", str(tmp_path / "missing.json"))
    cases.append(("TAXI_GCP_CREDENTIALS_FILE", "cannot read the key file"))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**key, "type": "authorized_user"}))
    cases.append(("TAXI_GCP_CREDENTIALS_FILE", "not a service-account key"))
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({**key, "private_key": key["private_key"][:200]}))
    cases.append(("TAXI_GCP_CREDENTIALS_FILE", "private_key does not parse"))
    for (setting, message), path in zip(cases, (tmp_path / "missing.json", bad, broken)):
        gcp_vars.setenv(setting, str(path))
        with pytest.raises(SettingsError) as err:
            Settings.from_env()
        assert setting in str(err.value) and message in str(err.value)
        assert secret not in str(err.value) and key["private_key"][:200] not in repr(err.value)
    gcp_vars.delenv("TAXI_GCP_CREDENTIALS_FILE")

    not_b64 = "this is %%% not base64 " + secret[:20]
    no_json = base64.b64encode(b"{" + secret.encode()).decode()
    no_key = base64.b64encode(json.dumps({**key, "private_key": ""}).encode()).decode()
    for value, message in (
        (not_b64, "not valid base64"),
        (no_json, "not a JSON service-account key"),
        (no_key, "lacks private_key"),
    ):
        gcp_vars.setenv("TAXI_GCP_CREDENTIALS_B64", value)
        with pytest.raises(SettingsError) as err:
            Settings.from_env()
        text = str(err.value)
        assert text.startswith("TAXI_GCP_CREDENTIALS_B64: ") and message in text
        assert value not in text and secret[:20] not in text

    gcp_vars.setenv("TAXI_GCP_CREDENTIALS_B64", base64.b64encode(json.dumps(key).encode()).decode())
    s = Settings.from_env()
    assert secret not in repr(s) and "credentials_b64" not in repr(s.gcp)
    gcp_vars.setenv("TAXI_GCP_CREDENTIALS_FILE", str(bad))
    with pytest.raises(
        SettingsError, match="set only one of TAXI_GCP_CREDENTIALS_FILE and TAXI_GCP_CREDENTIALS_B64"
    ):
        Settings.from_env()


def test_target_gcp_needs_project_and_bucket(monkeypatch):
    monkeypatch.setenv("TAXI_TARGET", "gcp")
    for key in ("TAXI_GCP_PROJECT", "TAXI_GCS_BUCKET"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(SettingsError, match="TAXI_GCP_PROJECT"):
        Settings.from_env()
    with pytest.raises(SettingsError, match="TAXI_TARGET=gcp needs TAXI_GCP_PROJECT and TAXI_GCS_BUCKET"):
        Settings(target=GCP)


def test_no_application_default_credentials_gives_a_clear_error(monkeypatch, tmp_path):
    from taxi_platform.gcp.credentials import GcpCredentialsError
    from taxi_platform.gcp.resources import TaxiBigQueryResource, TaxiGCSResource

    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # no gcloud ADC file either
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    with pytest.raises(GcpCredentialsError, match="no Google credentials: set TAXI_GCP_CREDENTIALS_FILE"):
        with TaxiBigQueryResource(project="my-project-42").get_client():
            pass
    with pytest.raises(GcpCredentialsError, match="TAXI_GCP_CREDENTIALS_B64"):
        TaxiGCSResource(project="my-project-42").get_client()


def test_same_definitions_on_both_targets(tmp_path):
    import dagster as dg

    from taxi_platform.definitions import build_definitions

    local = Settings(source="course", home=tmp_path)
    gcp = Settings(
        source="course",
        target=GCP,
        home=tmp_path,
        gcp=GcpSettings(project="my-project-42", gcs_bucket="taxi-lake"),
    )

    def shape(settings):
        defs = build_definitions(settings)
        graph = defs.resolve_asset_graph()
        assets = {
            k: (graph.get(k).partitions_def, graph.get(k).group_name) for k in graph.get_all_asset_keys()
        }
        checks = set(graph.asset_check_keys)
        schedules = {}
        for s in defs.schedules or []:
            assert isinstance(s, dg.ScheduleDefinition), s
            schedules[s.name] = (s.cron_schedule, s.job_name)
        sensors = {s.name for s in defs.sensors or []}
        jobs = {j.name for j in defs.jobs or []}
        assert defs.resources is not None
        return assets, checks, schedules, sensors, jobs, set(defs.resources)

    a, b = shape(local), shape(gcp)
    assert a == b
    assets, checks = a[0], a[1]
    assert len(assets) >= 12 and len(checks) >= 6
    kinds = {}
    for settings in (local, gcp):
        graph = build_definitions(settings).resolve_asset_graph()
        from taxi_platform.assets.trip_keys import final_key

        kinds[settings.target.name] = graph.get(final_key(YELLOW)).kinds
    assert "postgres" in kinds["local"] and "bigquery" in kinds["gcp"]
    resources = build_definitions(gcp).resources
    assert resources is not None
    assert type(resources["warehouse"]).__name__ == "BigQueryWarehouse"
    assert type(resources["lake_io_manager"]).__name__ == "GcsLakeIOManager"


@pytest.fixture
def refusing_token_endpoint():
    """An OAuth token endpoint on 127.0.0.1 that refuses every grant at once (no retries)."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Refuse(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = b'{"error": "invalid_grant", "error_description": "refused by the test"}'
            self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Refuse)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/token"
    server.shutdown()
    server.server_close()


def test_credentials_never_reach_logs_metadata_or_errors(gcp_env: GcpEnv, refusing_token_endpoint):
    """A real-looking key whose token endpoint refuses: the warehouse steps fail, and neither the
    key nor its base64 form appears in the run's records; it reaches the resources from the
    Settings (no environment variable), and their configuration, which the UI shows, never holds it."""
    from dataclasses import replace

    import dagster as dg

    from taxi_platform.assets.trip_keys import raw_file_key
    from taxi_platform.assets.trips import build_trip_assets
    from taxi_platform.resources import build_resources
    from taxi_platform.warehouse.bigquery import BigQueryWarehouse

    month = date(2019, 1, 1)
    generate_month(YELLOW, month, gcp_env.mirror_path(YELLOW, month), rows=300, seed=1)
    assets = build_trip_assets(YELLOW, warehouse_kind="bigquery", lake_kind="gcs", min_in_month_share=0.95)
    # The file enters the lake with the emulator's anonymous access ...
    dg.materialize(
        assets,
        selection=[raw_file_key(YELLOW)],
        partition_key="2019-01-01",
        instance=gcp_env.instance,
        resources=gcp_env.resources,
    )
    # ... then staging and replace run with the key.
    key = _fake_key(token_uri=refusing_token_endpoint)
    b64 = base64.b64encode(json.dumps(key).encode()).decode()
    settings = replace(gcp_env.settings, gcp=replace(gcp_env.gcp, anonymous=False, credentials_b64=b64))
    resources = build_resources(settings)
    bigquery = cast(BigQueryWarehouse, resources["warehouse"]).bigquery
    assert bigquery.gcp_credentials == b64
    shown = bigquery.get_resource_definition().config_schema.default_value_as_json_str
    assert f'"project": "{PROJECT}"' in shown and b64[:40] not in shown
    result = dg.materialize(
        assets,
        selection=[s for s in (a.key for a in assets) if s != raw_file_key(YELLOW)],
        partition_key="2019-01-01",
        instance=gcp_env.instance,
        resources=resources,
        raise_on_error=False,
    )
    assert not result.success
    message = failure_message(result)
    assert "invalid_grant" in message or "refused" in message, message
    texts = [message, str(gcp_env.instance.get_run_by_id(result.run_id))]
    texts += [str(r) for r in gcp_env.instance.all_logs(result.run_id)]
    haystack = "\n".join(texts)
    body = "".join(key["private_key"].splitlines()[1:-1])
    for secret in (b64, b64[:40], b64[-40:], key["private_key"].splitlines()[1], body[100:160]):
        assert secret not in haystack
