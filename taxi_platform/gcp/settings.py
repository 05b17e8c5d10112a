"""The GCP target's settings (TAXI_TARGET=gcp): project, bucket, datasets, credentials, endpoints
and the cost guardrail, read and checked with settings.py's readers; `Settings.gcp` holds them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from taxi_platform.gcp.credentials import GcpCredentialsError, read_credentials_b64, read_credentials_file
from taxi_platform.gcp.names import bucket_problem, location_problem, project_problem
from taxi_platform.redact import mask_url
from taxi_platform.settings import SettingsError, env_int, env_text, validate_identifier


@dataclass(frozen=True)
class GcpSettings:
    """The GCP target: lake `gs://<gcs_bucket>/<tag>/<file>`, final tables in `<bq_dataset>`,
    staging in TAXI_STAGING_SCHEMA, dbt models in TAXI_DBT_SCHEMA (datasets of `project`).

    Credentials: a service-account key file (TAXI_GCP_CREDENTIALS_FILE), the key base64-encoded
    (TAXI_GCP_CREDENTIALS_B64), or else application-default credentials. `anonymous` and the two
    endpoints exist for local emulators.
    """

    project: str
    gcs_bucket: str
    bq_dataset: str = "taxi"
    location: str = "US"
    credentials_file: str | None = None
    credentials_b64: str | None = field(default=None, repr=False)  # secret: never printed
    anonymous: bool = False
    bq_api_endpoint: str | None = None
    gcs_api_endpoint: str | None = None
    # Every query job's maximum_bytes_billed (BigQuery bills at least 10 MB a query).
    max_bytes_billed: int = 100 * 10**9

    def __post_init__(self) -> None:
        for problem in (project_problem(self.project), bucket_problem(self.gcs_bucket)):
            if problem:
                raise SettingsError(problem)
        validate_identifier(self.bq_dataset, "TAXI_BQ_DATASET")
        if problem := location_problem(self.location):
            raise SettingsError(problem)
        if self.credentials_file and self.credentials_b64:
            raise SettingsError("set only one of TAXI_GCP_CREDENTIALS_FILE and TAXI_GCP_CREDENTIALS_B64")
        if self.anonymous and (self.credentials_file or self.credentials_b64):
            raise SettingsError(
                "TAXI_GCP_ANONYMOUS is for emulators: it excludes "
                "TAXI_GCP_CREDENTIALS_FILE and TAXI_GCP_CREDENTIALS_B64"
            )
        try:  # a key that does not parse is refused now, not at the first run
            if self.credentials_file:
                read_credentials_file(self.credentials_file)
            if self.credentials_b64:
                read_credentials_b64(self.credentials_b64)
        except GcpCredentialsError as exc:
            raise SettingsError(str(exc)) from None
        for name, value in (
            ("TAXI_BQ_API_ENDPOINT", self.bq_api_endpoint),
            ("TAXI_GCS_API_ENDPOINT", self.gcs_api_endpoint),
        ):
            if value is not None and not re.match(r"^https?://[^/\s]+/?$", value):
                raise SettingsError(f"{name}={mask_url(value)!r} must be http(s)://host[:port]")

    @classmethod
    def from_env(cls) -> GcpSettings:
        anonymous = (env_text("TAXI_GCP_ANONYMOUS", "false") or "").lower()
        if anonymous not in ("true", "false", "1", "0", "yes", "no"):
            raise SettingsError(f"TAXI_GCP_ANONYMOUS={anonymous!r}: use true or false")
        return cls(
            project=env_text("TAXI_GCP_PROJECT") or "",
            gcs_bucket=env_text("TAXI_GCS_BUCKET") or "",
            bq_dataset=env_text("TAXI_BQ_DATASET", "taxi") or "",
            max_bytes_billed=env_int("TAXI_BQ_MAX_BYTES_BILLED", 100 * 10**9, minimum=10 * 2**20),
            location=env_text("TAXI_GCP_LOCATION", "US") or "",
            credentials_file=env_text("TAXI_GCP_CREDENTIALS_FILE"),
            credentials_b64=env_text("TAXI_GCP_CREDENTIALS_B64"),
            anonymous=anonymous in ("true", "1", "yes"),
            bq_api_endpoint=(env_text("TAXI_BQ_API_ENDPOINT") or "").rstrip("/") or None,
            gcs_api_endpoint=(env_text("TAXI_GCS_API_ENDPOINT") or "").rstrip("/") or None,
        )
