"""`taxi-platform db start|stop|status|psql|env|remove`: the embedded PostgreSQL, and where a SQL
client or plain dbt connects (also to an external server, TAXI_POSTGRES_URL)."""

from __future__ import annotations

import argparse
import subprocess

from taxi_platform.commands.errors import CliError, ensure_home
from taxi_platform.settings import Settings
from taxi_platform.target import LOCAL
from taxi_platform.warehouse.embedded.binaries import bin_dir
from taxi_platform.warehouse.embedded.server import embedded_server


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    if settings.postgres_url and args.action not in ("status", "env", "remove"):
        print("TAXI_POSTGRES_URL is set: the platform uses that server, not the embedded one.")
        return 1
    if args.action not in ("status", "env", "remove"):  # they only read (or delete); the others
        ensure_home(settings)  # create the server's folders
    server = embedded_server(settings)
    if args.action == "start":
        server.ensure_running()
        print(
            f"embedded PostgreSQL running on 127.0.0.1:{server.url().rsplit(':', 1)[1].split('/')[0]} "
            f"(data in {server.data_dir})"
        )
    elif args.action == "stop":
        print("stopped" if server.stop() else "not running")
    elif args.action == "remove":
        data_dir = server.data_dir
        print(f"removed the embedded PostgreSQL in {data_dir}" if server.remove() else "nothing to remove")
    elif args.action == "status":
        if settings.postgres_url:
            from taxi_platform.redact import mask_url

            print(f"external PostgreSQL: {mask_url(settings.postgres_url)}")
        else:
            print(
                f"embedded PostgreSQL in {server.data_dir}: "
                f"{'running' if server.is_running() else 'not running'}"
            )
        for name, value in {**_connection_details(settings, server), **_schemas(settings)}.items():
            print(f"  {name:<9} {value}")
        print(
            '  dbt       `taxi-platform dbt <command>`, or `eval "$(taxi-platform db env)"` then plain '
            "`dbt` inside dbt_project/"
        )
    elif args.action == "env":
        for line in _dbt_env_lines(settings, server):
            print(line)
    elif args.action == "psql":
        url = server.ensure_running()
        return subprocess.call([str(bin_dir() / "psql"), url])
    return 0


def _connection_details(settings: Settings, server) -> dict[str, str]:
    if not settings.postgres_url:
        return server.connection_details()
    from urllib.parse import unquote, urlsplit

    url = urlsplit(settings.postgres_url)
    try:
        port = str(url.port or 5432)
    except ValueError:
        raise CliError("TAXI_POSTGRES_URL has a port that is not a number") from None
    return {
        "host": url.hostname or "127.0.0.1",
        "port": port,
        "database": unquote(url.path.lstrip("/")),
        "user": unquote(url.username or ""),
        "password": "in TAXI_POSTGRES_URL",
    }


def _schemas(settings: Settings) -> dict[str, str]:
    return {
        "schemas": f"{settings.warehouse_schema} (final tables), {settings.staging_schema} "
        f"(staging), {settings.dbt_schema} (dbt models)"
    }


def _dbt_env_lines(settings: Settings, server) -> list[str]:
    """Shell exports that point plain `dbt` (profiles.yml in dbt_project/) at the warehouse. The
    password is read from its file when the shell evaluates them: it is never printed."""
    import shlex

    if not settings.postgres_url and not server.is_initialized():
        raise CliError("the embedded PostgreSQL has not been created yet: run `taxi-platform db start` first")
    details = _connection_details(settings, server)
    values = {
        "TAXI_DBT_TARGET": LOCAL.dbt_target,
        "TAXI_DBT_PG_HOST": details["host"],
        "TAXI_DBT_PG_PORT": details["port"],
        "TAXI_DBT_PG_USER": details["user"],
        "TAXI_DBT_PG_DBNAME": details["database"],
        "TAXI_WAREHOUSE_SCHEMA": settings.warehouse_schema,
        "TAXI_DBT_SCHEMA": settings.dbt_schema,
    }
    password = (
        ['export TAXI_DBT_PG_PASSWORD="$(cat ' + shlex.quote(str(server.root / "password")) + ')"']
        if not settings.postgres_url
        else ["# export TAXI_DBT_PG_PASSWORD=<the password in TAXI_POSTGRES_URL> (not printed here)"]
    )
    return (
        [f"export {k}={shlex.quote(v)}" for k, v in values.items()]
        + password
        + ["export DBT_PROFILES_DIR=" + shlex.quote(str(settings.dbt_project_dir))]
    )
