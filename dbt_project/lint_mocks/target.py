"""`target` for sqlfluff's jinja templater: the models are linted as PostgreSQL renders them."""

type = "postgres"
name = "local"
schema = "taxi_dbt"
