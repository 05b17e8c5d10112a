"""How a run executes its steps.

Runs launched through the instance (UI, backfills, schedules, sensors) execute their steps in the
run's own process: a process per step would import this code location again (~6 s each). Runs
proceed in parallel instead, bounded by the run queue and the `taxi_warehouse` pool.
"""

from __future__ import annotations

import dagster as dg

STEP_EXECUTOR = dg.in_process_executor


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(executor=STEP_EXECUTOR)
