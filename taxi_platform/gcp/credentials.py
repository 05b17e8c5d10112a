"""Google credentials for the GCP target: service-account keys parsed and checked in memory (no
temporary key file for the clients, never a process-wide environment variable; dbt, which reads
only files, gets one: warehouse/bigquery_dbt.py), anonymous access for the emulators,
else application-default credentials. Every error names the setting and never the key's content."""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Any

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)


class GcpCredentialsError(RuntimeError):
    """No usable credentials; the message names the setting and never holds key material."""


def service_account_info(raw: bytes, setting: str) -> dict:
    """Parse and check a service-account key; errors name the setting, never the content."""
    try:
        info = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise GcpCredentialsError(f"{setting}: not a JSON service-account key") from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise GcpCredentialsError(
            f'{setting}: not a service-account key (its "type" is not '
            '"service_account"); for other credentials use application-default '
            "credentials (GOOGLE_APPLICATION_CREDENTIALS) and leave it unset"
        )
    missing = [k for k in ("client_email", "private_key", "token_uri") if not info.get(k)]
    if missing:
        raise GcpCredentialsError(f"{setting}: the service-account key lacks {', '.join(missing)}")
    try:
        from google.oauth2 import service_account

        service_account.Credentials.from_service_account_info(info)
    except Exception:  # noqa: BLE001 - the message could quote the key: never pass it on
        raise GcpCredentialsError(
            f"{setting}: the service-account key's private_key does not parse"
        ) from None
    return info


def read_credentials_b64(value: str, setting: str = "TAXI_GCP_CREDENTIALS_B64") -> dict:
    try:
        raw = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise GcpCredentialsError(
            f"{setting}: not valid base64 (encode the key file with `base64 -w0`)"
        ) from None
    return service_account_info(raw, setting)


def read_credentials_file(path: str, setting: str = "TAXI_GCP_CREDENTIALS_FILE") -> dict:
    try:
        raw = Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise GcpCredentialsError(f"{setting}={path!r}: cannot read the key file ({exc.strerror})") from None
    return service_account_info(raw, setting)


def google_credentials(*, b64: str | None, file: str | None, anonymous: bool) -> Any | None:
    """A google.auth credentials object, or None for application-default credentials."""
    if b64:
        info = read_credentials_b64(b64)
    elif file:
        info = read_credentials_file(file)
    elif anonymous:
        from google.auth.credentials import AnonymousCredentials

        return AnonymousCredentials()
    else:
        return None
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
