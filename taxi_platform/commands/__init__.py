"""What the `taxi-platform` subcommands do, one module each (the parsing is in taxi_platform/cli.py;
the demo in taxi_platform/demo/).

    errors.py  CliError and the one-line messages of paths and settings a person can fix
    files.py   `sample` and `mirror`: generated release files, written or served
    dbt.py     `dbt`: any dbt command against the platform's warehouse
    db.py      `db`: the embedded PostgreSQL (start, stop, status, psql, env, remove)
"""
