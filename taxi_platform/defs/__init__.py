"""The code location's parts, loaded by `dg.load_from_defs_folder` (taxi_platform/definitions.py):
one module per part, each a thin `@dg.definitions` over the factories of taxi_platform/, built from
the Settings of the environment (`settings_from_env`, read once for all the parts).

    trips.py       the trip assets of every dataset the source serves (file, staging, table)
    reference.py   the zone lookup (file and table)
    dbt.py         the dbt project's models, seeds and tests
    automation.py  jobs, schedules, sensors and the freshness checks
    resources.py   the target's resources (source, lake, warehouse, dbt)
    executor.py    how a run executes its steps

Each module's `*_definitions(settings)` builds its part from explicit Settings too, which is what
`build_definitions(settings)` merges (tests, benchmarks).
"""
