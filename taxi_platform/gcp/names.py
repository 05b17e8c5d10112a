"""What Google accepts as a project id, a Cloud Storage bucket name and a location: each check gives
the problem with a value, naming its setting, or None (taxi_platform/settings.py raises it)."""

from __future__ import annotations

import re

_PROJECT = re.compile(r"^(?:[a-z][a-z0-9.-]{0,61}[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9_.-]{1,61}[a-z0-9]$")
_LOCATION = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,39}$")


def project_problem(project: str) -> str | None:
    if project and _PROJECT.fullmatch(project):
        return None
    return (
        f"TAXI_GCP_PROJECT={project!r} is not a GCP project id: 6-30 lower-case "
        "letters, digits and hyphens, starting with a letter, not ending with a hyphen"
    )


def bucket_problem(bucket: str) -> str | None:
    bucket = bucket or ""
    if (
        _BUCKET.fullmatch(bucket)
        and ".." not in bucket
        and not bucket.startswith("goog")
        and "google" not in bucket
        and not re.fullmatch(r"[0-9.]+", bucket)
    ):
        return None
    return (
        f"TAXI_GCS_BUCKET={bucket!r} is not a valid bucket name: 3-63 lower-case letters, "
        "digits, '-', '_' and '.', starting and ending with a letter or digit, no 'goog' "
        "prefix, no 'google' (just the name: no gs://, no path)"
    )


def location_problem(location: str) -> str | None:
    if _LOCATION.fullmatch(location or ""):
        return None
    return f"TAXI_GCP_LOCATION={location!r} is not a location (US, EU, or a region such as europe-west1)"
