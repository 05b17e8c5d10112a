"""What the two release sensors (the course's GitHub releases, the TLC's files) share: the sensor
over the trip jobs, and the run that loads one new or re-published file's month."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date

import dagster as dg

from taxi_platform.assets.policies import RELEASE_CHANGE_TAG
from taxi_platform.automation.jobs import partition_key, run_tags, trip_job_name
from taxi_platform.datasets import DatasetSpec


def release_sensor(
    name: str,
    description: str,
    jobs: list[dg.UnresolvedAssetJobDefinition],
    interval_seconds: int,
    default_status: dg.DefaultSensorStatus,
) -> Callable[[Callable], dg.SensorDefinition]:
    """The decorator of a release sensor: it requests runs of the trip jobs, every `interval_seconds`."""
    return dg.sensor(
        name=name,
        jobs=jobs,
        minimum_interval_seconds=interval_seconds,
        default_status=default_status,
        description=description,
    )


def file_run_request(
    spec: DatasetSpec, month: date, *, run_key: str, change: str, tags: Mapping[str, str]
) -> dg.RunRequest:
    """A run of the dataset's job for the month of a `change` ("new" or "republished") file; the
    run key names the file's version, so a replayed tick never loads the same upload twice."""
    return dg.RunRequest(
        run_key=run_key,
        job_name=trip_job_name(spec),
        partition_key=partition_key(month),
        tags={**run_tags(spec, month), RELEASE_CHANGE_TAG: change, **tags},
    )
