"""Run-failure notifications: a run-failure sensor turns each failed run of this code location into
a `FailureSummary` and hands it to a pluggable `Notifier`.

Notifiers shipped: `LogNotifier` (always: the sensor's log in the UI and the Python logger
`taxi_platform.failures`) and `JsonLinesNotifier` (one JSON object per failure appended to
`TAXI_FAILURE_LOG`, if set). Anything with a `notify(summary)` method plugs in (e-mail, Slack, ...)
through `build_failure_sensor(notifier)`; no external service is needed by default.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import dagster as dg

from taxi_platform.redact import Redactor

FAILURE_SENSOR_NAME = "taxi_run_failure_notifier"
logger = logging.getLogger("taxi_platform.failures")


@dataclass(frozen=True)
class StepFailure:
    step: str
    error: str


@dataclass(frozen=True)
class FailureSummary:
    run_id: str
    job_name: str
    partition: str | None
    dataset: str | None  # the `taxi` tag
    file: str | None  # the `file` tag
    failed_steps: tuple[StepFailure, ...] = field(default_factory=tuple)
    message: str = ""
    kind: str = "run_failure"  # or "overdue": a month not loaded when due (automation/freshness.py)

    def text(self) -> str:
        what = ", ".join(
            x
            for x in (
                f"job {self.job_name}",
                f"partition {self.partition}" if self.partition else "",
                f"file {self.file}" if self.file else "",
            )
            if x
        )
        if self.kind == "overdue":
            return f"OVERDUE ({what})\n  {self.message}"
        lines = [f"run {self.run_id} FAILED ({what})"]
        lines += [f"  step {s.step}: {s.error}" for s in self.failed_steps]
        if not self.failed_steps and self.message:
            lines.append(f"  {self.message}")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


class Notifier(Protocol):
    def notify(self, summary: FailureSummary) -> None: ...


class LogNotifier:
    """The summary as an ERROR on the `taxi_platform.failures` logger (and the sensor's log)."""

    def __init__(self, log: logging.Logger | None = None) -> None:
        self.log = log or logger

    def notify(self, summary: FailureSummary) -> None:
        self.log.error(summary.text())


class JsonLinesNotifier:
    """Appends one JSON line per failure to a file (for another tool to pick up)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def notify(self, summary: FailureSummary) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(summary.to_json() + "\n")
            f.flush()
            os.fsync(f.fileno())


class Notifiers:
    """Several notifiers; one failing does not stop the others."""

    def __init__(self, notifiers: Sequence[Notifier]) -> None:
        self.notifiers = list(notifiers)

    def notify(self, summary: FailureSummary) -> None:
        for notifier in self.notifiers:
            try:
                notifier.notify(summary)
            except Exception as exc:  # a broken notifier must not hide the failure from the others
                logger.warning(f"notifier {type(notifier).__name__} failed: {type(exc).__name__}: {exc}")


def build_notifier(failure_log: Path | None) -> Notifier:
    """The log, always; and the JSON-lines file `failure_log` (TAXI_FAILURE_LOG) if set."""
    notifiers: list[Notifier] = [LogNotifier()]
    if failure_log is not None:
        notifiers.append(JsonLinesNotifier(failure_log))
    return Notifiers(notifiers)


def _first_line(text: str, limit: int = 500) -> str:
    text = (text or "").strip()
    line = text.splitlines()[0] if text else ""
    return Redactor()(line[:limit])  # a connection URL's password never reaches a notifier


def _partitions(tags: Mapping[str, str]) -> str | None:
    """`2019-01-01`, or `2019-01-01...2019-03-01` for a range run."""
    start, end = (
        tags.get("dagster/asset_partition_range_start"),
        tags.get("dagster/asset_partition_range_end"),
    )
    if start and end and start != end:
        return f"{start}...{end}"
    return tags.get("dagster/partition") or start


def summarize(context: dg.RunFailureSensorContext) -> FailureSummary:
    run = context.dagster_run
    steps = []
    for event in context.get_step_failure_events():
        error = event.step_failure_data.error if event.step_failure_data else None
        message = ""
        while error is not None:  # the user's error is often the cause of Dagster's wrapper
            message = error.message
            if not error.message.startswith("dagster._core.errors.") or error.cause is None:
                break
            error = error.cause
        steps.append(StepFailure(step=event.step_key or "?", error=_first_line(message)))
    return FailureSummary(
        run_id=run.run_id,
        job_name=run.job_name,
        partition=_partitions(run.tags),
        dataset=run.tags.get("taxi"),
        file=run.tags.get("file"),
        failed_steps=tuple(steps),
        message=_first_line(context.failure_event.message or ""),
    )


def build_failure_sensor(
    notifier: Notifier,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> dg.SensorDefinition:
    @dg.run_failure_sensor(
        name=FAILURE_SENSOR_NAME,
        default_status=default_status,
        minimum_interval_seconds=30,
        description="Logs a summary of every failed run (failed steps and their errors) through "
        "the configured notifiers.",
    )
    def failure_sensor(context: dg.RunFailureSensorContext) -> None:
        summary = summarize(context)
        context.log.error(summary.text())
        notifier.notify(summary)

    return failure_sensor
