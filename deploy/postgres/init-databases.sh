#!/usr/bin/env bash
# Creates the warehouse and Dagster-storage databases, each owned by its own login role, so the
# code location cannot touch Dagster's tables and Dagster's role cannot read the trips.
#
# The postgres image runs this once, when it initialises an empty data volume
# (/docker-entrypoint-initdb.d); changing .env later does not re-run it (see README "Deploy").
# tests/test_deploy.py runs it against the embedded PostgreSQL, as the image would.
set -euo pipefail

for var in TAXI_DB_NAME TAXI_DB_USER TAXI_DB_PASSWORD DAGSTER_PG_DB DAGSTER_PG_USERNAME DAGSTER_PG_PASSWORD; do
  if [ -z "${!var:-}" ]; then
    echo "init-databases.sh: $var is not set (see .env.example)" >&2
    exit 1
  fi
done

# \getenv, not `psql -v name=value`: the passwords never appear on a command line.
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "${POSTGRES_DB:-$POSTGRES_USER}" <<'SQL'
\getenv taxi_db TAXI_DB_NAME
\getenv taxi_user TAXI_DB_USER
\getenv taxi_password TAXI_DB_PASSWORD
\getenv dagster_db DAGSTER_PG_DB
\getenv dagster_user DAGSTER_PG_USERNAME
\getenv dagster_password DAGSTER_PG_PASSWORD

CREATE ROLE :"taxi_user" LOGIN PASSWORD :'taxi_password';
CREATE DATABASE :"taxi_db" OWNER :"taxi_user";
REVOKE ALL ON DATABASE :"taxi_db" FROM PUBLIC;

CREATE ROLE :"dagster_user" LOGIN PASSWORD :'dagster_password';
CREATE DATABASE :"dagster_db" OWNER :"dagster_user";
REVOKE ALL ON DATABASE :"dagster_db" FROM PUBLIC;
SQL
