"""Child process of the benchmark: one Dagster run of raw file -> staging -> final (+ checks) for a
month, with the code location's own definitions, resources and instance ($DAGSTER_HOME), executed in
this process (as `taxi-platform demo` runs it), so that this process's peak RSS is the peak of
the materialization. Prints a JSON line: the run id and the process's peak RSS (VmHWM: the peak
of this process's own memory; `ru_maxrss` would also count the parent's at the time of the fork).

    python -m bench.materialize yellow 2019-01     # raw file -> staging -> final of a month
    python -m bench.materialize reference          # zones and the unpartitioned dbt models
    python -m bench.materialize dbt 2019-01        # the monthly dbt models of a month (both colours)
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    import dagster as dg

    from taxi_platform.assets.dbt import DBT_REFERENCE_KEYS
    from taxi_platform.assets.trip_keys import final_key, raw_file_key, staging_key
    from taxi_platform.assets.zones import reference_file_key, reference_table_key
    from taxi_platform.datasets import ZONES, get_dataset
    from taxi_platform.definitions import build_definitions

    job = build_definitions().resolve_implicit_global_asset_job_def()
    reference = [reference_file_key(ZONES), reference_table_key(ZONES), *DBT_REFERENCE_KEYS]
    with dg.DagsterInstance.get() as instance:
        if argv[0] == "reference":
            result = job.execute_in_process(
                instance=instance, asset_selection=reference, raise_on_error=False
            )
        elif argv[0] == "dbt":
            monthly = [
                k
                for k in job.asset_layer.asset_graph.get_all_asset_keys()
                if k.path[0] == "dbt" and k not in reference
            ]
            result = job.execute_in_process(
                instance=instance,
                asset_selection=monthly,
                partition_key=f"{argv[1]}-01",
                raise_on_error=False,
            )
        else:
            spec, month = get_dataset(argv[0]), argv[1]
            result = job.execute_in_process(
                instance=instance,
                partition_key=f"{month}-01",
                raise_on_error=False,
                asset_selection=[raw_file_key(spec), staging_key(spec), final_key(spec)],
                tags={"taxi": spec.name, "file": spec.file_name(month_date(month))},
            )
    print(json.dumps({"run_id": result.run_id, "peak_rss_kb": peak_rss_kb()}))
    return 0 if result.success else 1


def peak_rss_kb() -> int | None:
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # not Linux: an upper bound


def month_date(text: str):
    from datetime import date

    year, month = text.split("-")
    return date(int(year), int(month), 1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
