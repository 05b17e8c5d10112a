"""Google clients for the GCP target: dagster-gcp's BigQuery and GCS resources, with credentials
built in memory (never a temporary key file, never a process-wide environment variable) and an
optional API endpoint (the local emulators in the tests).

Credentials, in order: `gcp_credentials` (a base64 service-account key, configured as
`EnvVar("TAXI_GCP_CREDENTIALS_B64")` so the UI shows the variable's name only), `credentials_file`
(a service-account key file), `anonymous` (emulators), else application-default credentials.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dagster_gcp import BigQueryResource, GCSResource
from google.api_core.client_options import ClientOptions
from pydantic import Field

from taxi_platform.settings import SettingsError, read_credentials_b64, read_credentials_file

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)


class GcpCredentialsError(RuntimeError):
    """No usable credentials; the message names the setting and never holds key material."""


def google_credentials(*, b64: str | None, file: str | None, anonymous: bool) -> Any | None:
    """A google.auth credentials object, or None for application-default credentials."""
    try:
        if b64:
            info = read_credentials_b64(b64)
        elif file:
            info = read_credentials_file(file)
        elif anonymous:
            from google.auth.credentials import AnonymousCredentials

            return AnonymousCredentials()
        else:
            return None
    except SettingsError as exc:
        raise GcpCredentialsError(str(exc)) from None
    from google.oauth2 import service_account

    return service_account.Credentials.from_service_account_info(info, scopes=SCOPES)


def default_credentials_error(exc: Exception) -> GcpCredentialsError:
    """What to say when application-default credentials are missing (the message names no secret)."""
    return GcpCredentialsError(
        "no Google credentials: set TAXI_GCP_CREDENTIALS_FILE (a service-account key file) or "
        "TAXI_GCP_CREDENTIALS_B64 (the key, base64-encoded), or provide application-default "
        f"credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud auth application-default login) "
        f"[{type(exc).__name__}]"
    )


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
    """dagster-gcp's BigQueryResource (project, location, gcp_credentials) plus a key file, anonymous
    access and an API endpoint. `gcp_credentials` is used in memory: no temporary file, and
    GOOGLE_APPLICATION_CREDENTIALS is neither read for it nor changed."""

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

    gcp_credentials: str | None = Field(default=None, description="Base64 service-account key.")
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
