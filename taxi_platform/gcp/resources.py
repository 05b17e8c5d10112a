"""Google clients for the GCP target: dagster-gcp's BigQuery and GCS resources, with credentials
built in memory (taxi_platform/gcp/credentials.py) and an optional API endpoint (the local emulators
in the tests).

Credentials, in order: `gcp_credentials` (a base64 service-account key), `credentials_file` (a
service-account key file), `anonymous` (emulators), else application-default credentials.
`gcp_credentials` is a secret: it is a resource dependency, not config, so the UI, the run config
and the job snapshots never hold it (taxi_platform/resources.py says why).
"""

# No `from __future__ import annotations`: Dagster reads the `dg.ResourceDependency` annotations
# as objects when the class is created (as strings, pydantic would refuse every value).

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
from dagster_gcp import BigQueryResource, GCSResource
from google.api_core.client_options import ClientOptions
from pydantic import Field

from taxi_platform.gcp.credentials import default_credentials_error, google_credentials

_KEY_DESCRIPTION = "Base64 service-account key (TAXI_GCP_CREDENTIALS_B64); not config, never shown."


class _Auth:
    gcp_credentials: str | None
    credentials_file: str | None
    anonymous: bool
    api_endpoint: str | None

    def _credentials(self) -> Any | None:
        return google_credentials(
            b64=self.gcp_credentials, file=self.credentials_file, anonymous=self.anonymous
        )

    def _client_options(self) -> ClientOptions | None:
        return ClientOptions(api_endpoint=self.api_endpoint) if self.api_endpoint else None


class TaxiBigQueryResource(BigQueryResource, _Auth):
    """dagster-gcp's BigQueryResource (project, location) plus a key file, anonymous access and an
    API endpoint. `gcp_credentials` is used in memory: no temporary file, and
    GOOGLE_APPLICATION_CREDENTIALS is neither read for it nor changed."""

    # dagster-gcp's config field, redeclared as a dependency: a config value would be shown.
    gcp_credentials: dg.ResourceDependency[str | None] = Field(
        default=None,  # type: ignore[arg-type]  # None: no key
        repr=False,
        description=_KEY_DESCRIPTION,
    )
    credentials_file: str | None = Field(default=None, description="Path of a service-account key file.")
    anonymous: bool = Field(default=False, description="Anonymous credentials (emulators only).")
    api_endpoint: str | None = Field(default=None, description="BigQuery API endpoint (emulators).")

    @contextmanager
    def get_client(self) -> Iterator[Any]:
        import google.auth.exceptions
        from google.cloud import bigquery

        try:
            client = bigquery.Client(
                project=self.project,
                location=self.location,
                credentials=self._credentials(),
                client_options=self._client_options(),
            )
        except google.auth.exceptions.DefaultCredentialsError as exc:
            raise default_credentials_error(exc) from None
        try:
            yield client
        finally:
            client.close()


class TaxiGCSResource(GCSResource, _Auth):
    """dagster-gcp's GCSResource (project) with the same credentials and endpoint options."""

    gcp_credentials: dg.ResourceDependency[str | None] = Field(
        default=None,  # type: ignore[arg-type]  # None: no key
        repr=False,
        description=_KEY_DESCRIPTION,
    )
    credentials_file: str | None = Field(default=None, description="Path of a service-account key file.")
    anonymous: bool = Field(default=False, description="Anonymous credentials (emulators only).")
    api_endpoint: str | None = Field(default=None, description="Cloud Storage API endpoint (emulators).")

    def get_client(self) -> Any:
        import google.auth.exceptions
        from google.cloud import storage

        try:
            return storage.Client(
                project=self.project, credentials=self._credentials(), client_options=self._client_options()
            )
        except google.auth.exceptions.DefaultCredentialsError as exc:
            raise default_credentials_error(exc) from None
