"""BigQuery warehouse (TAXI_TARGET=gcp), through dagster-gcp's BigQuery resource.

Tables (datasets from settings, in the resource's project):
  <staging>.<colour>_tripdata_<YYYY_MM>   the month's typed rows + unique_row_id + filename: a load
                                          job reads gs://<bucket>/<tag>/<file> into
                                          <colour>_tripdata_<YYYY_MM>_load (load jobs cannot compute
                                          columns), then CREATE OR REPLACE TABLE ... AS SELECT adds
                                          the id and the file name, and the load table is dropped
  <dataset>.<colour>_tripdata             PARTITION BY DATE(<pickup>), CLUSTER BY filename

A month's replace is ONE multi-statement transaction: DELETE the file's rows, INSERT the distinct
staged trips, COMMIT; a failure rolls it back and leaves the table as it was.

Rows sharing an id: PostgreSQL keeps the first in file order; a BigQuery load job keeps no row
order, so here the kept row is the smallest by all columns (deterministic). Exact duplicate rows,
the ones the files hold, give the same result on both.

The id is the one definition of `trip_id.py`, rendered by `bigquery_trip_id.bigquery_trip_id_sql`.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

from dagster_gcp import BigQueryResource

from taxi_platform.datasets import ColumnType, DatasetSpec, ReferenceSpec
from taxi_platform.lake.base import LakeFile
from taxi_platform.partitions import next_month
from taxi_platform.settings import validate_identifier
from taxi_platform.warehouse.base import (
    BadInputError,
    IdProfile,
    IdSummary,
    Log,
    PickupProfile,
    ReferenceResult,
    ReplaceResult,
    StagingResult,
    TripWarehouse,
    WarehouseError,
    refuse_wrong_month,
)
from taxi_platform.warehouse.bigquery_parquet import load_staging_parquet, scratch_dir, staging_parquet
from taxi_platform.warehouse.bigquery_trip_id import bigquery_trip_id_sql
from taxi_platform.warehouse.sql import bq_ident
from taxi_platform.warehouse.staged_month import StagedMonth

BQ_TYPES = {
    ColumnType.INTEGER: "INT64",
    ColumnType.TIMESTAMP: "TIMESTAMP",
    ColumnType.DECIMAL: "NUMERIC",
    ColumnType.TEXT: "STRING",
    ColumnType.DOUBLE: "FLOAT64",
}
# File names reach the replace script as literals (the emulator binds no parameters inside a
# script): only names of this shape are accepted.
_SAFE_FILE_NAME = re.compile(r"^[a-z0-9_]+_tripdata_[0-9]{4}-[0-9]{2}\.(csv\.gz|parquet)$")


STAGING_TABLE_EXPIRATION_MS = 7 * 24 * 3600 * 1000  # the staging dataset's tables: a week


def month_suffix(month: date) -> str:
    return f"{month:%Y_%m}"


class JobCost:
    """Bytes processed / billed, summed over the jobs of one operation (None: none reported)."""

    def __init__(self) -> None:
        self.processed: int | None = None
        self.billed: int | None = None

    def add(self, job: Any) -> Any:
        for attr, mine in (("total_bytes_processed", "processed"), ("total_bytes_billed", "billed")):
            value = getattr(job, attr, None)
            if value is not None:
                setattr(self, mine, (getattr(self, mine) or 0) + int(value))
        return job


class BigQueryWarehouse(TripWarehouse):
    """Trip tables in BigQuery; `bigquery` is dagster-gcp's resource (or a subclass of it)."""

    bigquery: BigQueryResource
    dataset: str = "taxi"
    staging_dataset: str = "taxi_staging"
    dbt_dataset: str = "taxi_dbt"
    # Every query job's maximum_bytes_billed (TAXI_BQ_MAX_BYTES_BILLED); the dbt profile's too.
    max_bytes_billed: int = 100 * 10**9
    # DuckDB's memory for a Parquet month's passes (it spills beyond; TAXI_ENGINE_MEMORY_MB).
    engine_memory: str = "128MB"

    # --- clients and names ---------------------------------------------------------------------
    @contextmanager
    def client(self, purpose: str) -> Iterator[Any]:
        from google.api_core import exceptions as gexc

        with self.bigquery.get_client() as client:
            try:
                yield client
            except gexc.GoogleAPICallError as exc:
                raise WarehouseError(f"{purpose} failed: {_job_message(exc)}") from None

    def _datasets(self) -> tuple[str, str]:
        return (
            validate_identifier(self.dataset, "TAXI_BQ_DATASET"),
            validate_identifier(self.staging_dataset, "TAXI_STAGING_SCHEMA"),
        )

    def _ref(self, client: Any, dataset: str, table: str) -> str:
        return f"{client.project}.{dataset}.{table}"

    def _q(self, client: Any, dataset: str, table: str) -> str:
        return "`" + self._ref(client, dataset, table) + "`"

    def final_table(self, spec: DatasetSpec) -> str:
        project = self.bigquery.project
        name = f"{self._datasets()[0]}.{spec.table_name}"
        return f"{project}.{name}" if project else name

    def staging_table(self, spec: DatasetSpec, month: date) -> str:
        project = self.bigquery.project
        name = f"{self._datasets()[1]}.{spec.table_name}_{month_suffix(month)}"
        return f"{project}.{name}" if project else name

    def _ensure_datasets(self, client: Any) -> None:
        from google.cloud import bigquery

        final, staging = self._datasets()
        for dataset in (final, staging):
            ds = bigquery.Dataset(f"{client.project}.{dataset}")
            ds.location = self.bigquery.location or client.location
            ds = client.create_dataset(ds, exists_ok=True)
            # A month's staging table is needed until its replace (and a re-execution of it):
            # then it expires by itself, so no per-month table is left behind.
            if dataset == staging and ds.default_table_expiration_ms != STAGING_TABLE_EXPIRATION_MS:
                ds.default_table_expiration_ms = STAGING_TABLE_EXPIRATION_MS
                client.update_dataset(ds, ["default_table_expiration_ms"])

    @staticmethod
    def _schema(columns) -> list:
        from google.cloud import bigquery

        return [bigquery.SchemaField(c.name, BQ_TYPES[c.type]) for c in columns]

    def ensure_trip_tables(self, specs: Sequence[DatasetSpec]) -> None:
        with self.client("create the trip tables") as client:
            self._ensure_datasets(client)
            for spec in specs:
                self._ensure_final(client, spec)

    def _ensure_final(self, client: Any, spec: DatasetSpec) -> str:
        """The final table, partitioned by pickup day and clustered by file (idempotent)."""
        from google.cloud import bigquery

        ref = self._ref(client, self._datasets()[0], spec.table_name)
        table = bigquery.Table(
            ref,
            schema=[
                bigquery.SchemaField("unique_row_id", "STRING", mode="REQUIRED"),
                bigquery.SchemaField("filename", "STRING", mode="REQUIRED"),
                *self._schema(spec.columns),
            ],
        )
        table.time_partitioning = bigquery.TimePartitioning(
            type_=bigquery.TimePartitioningType.DAY, field=spec.pickup_column
        )
        table.clustering_fields = ["filename"]
        existing = client.create_table(table, exists_ok=True)
        names = {f.name for f in existing.schema}
        if not {"unique_row_id", "filename", *spec.column_names} <= names:
            raise WarehouseError(
                f"{ref} exists without the columns unique_row_id, filename and the {spec.name} "
                "columns (not created by taxi_platform?): rename it, or set TAXI_BQ_DATASET to "
                "another dataset"
            )
        return ref

    def _query(self, client: Any, sql: str, cost: JobCost, params: list | None = None) -> list:
        from google.api_core import exceptions as gexc
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(
            query_parameters=params or [], maximum_bytes_billed=self.max_bytes_billed
        )
        job = client.query(sql, job_config=config)
        try:
            rows = list(job.result())
        except gexc.GoogleAPICallError as exc:
            raise_if_over_budget(exc, job, self.max_bytes_billed)
            raise
        finally:
            cost.add(job)
        return rows

    def _estimate(self, client: Any, sql: str, params: list | None = None) -> int | None:
        """The bytes a statement would process, from a dry run (free); None when not reported."""
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(query_parameters=params or [], dry_run=True, use_query_cache=False)
        job = client.query(sql, job_config=config)
        value = getattr(job, "total_bytes_processed", None)
        return None if value is None else int(value)

    # --- staging ------------------------------------------------------------------------------
    def load_staging(
        self, spec: DatasetSpec, month: date, lake_file: LakeFile, log: Log, run_id: str = ""
    ) -> StagingResult:
        from google.api_core import exceptions as gexc
        from google.cloud import bigquery

        started = time.monotonic()
        if spec.file_extension == "parquet":
            return self._load_staging_parquet(spec, month, lake_file, log, started, run_id)
        file_name = _checked_file_name(spec.file_name(month))
        if not lake_file.uri.startswith("gs://"):
            raise WarehouseError(
                f"BigQuery loads {file_name} from Cloud Storage, but the lake "
                f"holds it at {lake_file.uri}: use the GCS lake (TAXI_TARGET=gcp)"
            )
        cost = JobCost()
        staging_name = f"{spec.table_name}_{month_suffix(month)}"
        with self.client(f"staging {file_name}") as client:
            self._ensure_datasets(client)
            staging_ds = self._datasets()[1]
            load_ref = self._ref(client, staging_ds, staging_name + "_load")
            config = bigquery.LoadJobConfig(
                schema=self._schema([spec.column(name) for name in spec.csv_columns]),
                source_format=bigquery.SourceFormat.CSV,
                skip_leading_rows=1,
                write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
                create_disposition=bigquery.CreateDisposition.CREATE_IF_NEEDED,
                max_bad_records=0,
                allow_jagged_rows=False,
                allow_quoted_newlines=False,
                encoding="UTF-8",
                field_delimiter=",",
            )
            job = client.load_table_from_uri(lake_file.uri, load_ref, job_config=config)
            try:
                job.result()
            except gexc.GoogleAPICallError as exc:
                raise BadInputError(f"{file_name}: {_job_message(exc, job)}") from None
            cost.add(job)
            rows = int(job.output_rows or 0)
            log(f"{file_name}: {rows:,} rows loaded from {lake_file.uri} into {load_ref}")
            # The file's columns, and NULL for the columns of other eras (one schema per dataset).
            columns = ", ".join(
                bq_ident(c.name)
                if c.name in spec.csv_columns
                else f"CAST(NULL AS {BQ_TYPES[c.type]}) AS {bq_ident(c.name)}"
                for c in spec.columns
            )
            # The id and the file name: computed here, since a load job cannot compute columns.
            self._query(
                client,
                (
                    f"CREATE OR REPLACE TABLE {self._q(client, staging_ds, staging_name)} AS "
                    f"SELECT {bigquery_trip_id_sql(spec)} AS unique_row_id, '{file_name}' AS filename, "
                    f"{columns} FROM {self._q(client, staging_ds, staging_name + '_load')}"
                ),
                cost,
            )
            client.delete_table(load_ref, not_found_ok=True)
        log(f"{file_name}: {rows:,} rows staged in {self.staging_table(spec, month)}")
        return StagingResult(
            table=self.staging_table(spec, month),
            rows=rows,
            seconds=time.monotonic() - started,
            bytes_processed=cost.processed,
            bytes_billed=cost.billed,
        )

    def _staging_schema(self, spec: DatasetSpec) -> list:
        from google.cloud import bigquery

        return [
            bigquery.SchemaField("unique_row_id", "STRING"),
            bigquery.SchemaField("filename", "STRING"),
            *self._schema(spec.columns),
        ]

    def _load_staging_parquet(
        self, spec: DatasetSpec, month: date, lake_file: LakeFile, log: Log, started: float, run_id: str
    ) -> StagingResult:
        """A TLC Parquet month: typed and deduplicated by DuckDB here, then one load job
        (bigquery_parquet.py)."""
        file_name = _checked_file_name(spec.file_name(month))
        cost = JobCost()
        with scratch_dir() as scratch:
            path, found = staging_parquet(
                spec,
                month,
                lake_file,
                Path(scratch),
                memory_limit=self.engine_memory,
                redact=lambda message: message,  # DuckDB sees no credential on this path
                log=log,
            )
            with self.client(f"staging {file_name}") as client:
                self._ensure_datasets(client)
                ref = self._ref(client, self._datasets()[1], f"{spec.table_name}_{month_suffix(month)}")
                job = load_staging_parquet(
                    client,
                    ref,
                    self._staging_schema(spec),
                    path,
                    lambda exc, job: f"{file_name}: {_job_message(exc, job)}",
                )
                cost.add(job)
                rows = int(job.output_rows or 0)
                if rows != found.kept:
                    raise WarehouseError(
                        f"{file_name}: the load job wrote {rows:,} rows of the {found.kept:,} sent"
                    )
                # What the replace reports (rows read, duplicates dropped) travels with the table,
                # in the same words as PostgreSQL's staging comment.
                table = client.get_table(ref)
                table.description = StagedMonth(
                    rows=rows,
                    distinct=rows,
                    read=found.read,
                    in_month=found.in_month,
                    run_id=run_id,
                    sha256=found.sha256,
                ).comment(file_name)
                client.update_table(table, ["description"])
        log(
            f"{file_name}: {found.read:,} rows read, {found.dropped:,} duplicates dropped, "
            f"{rows:,} rows staged in {self.staging_table(spec, month)} by a load job"
        )
        return StagingResult(
            table=self.staging_table(spec, month),
            rows=rows,
            seconds=time.monotonic() - started,
            bytes_processed=cost.processed,
            bytes_billed=cost.billed,
            rows_read=found.read,
            sha256=found.sha256,
            schema_era=found.q.era.name,
            schema_fingerprint=found.schema.fingerprint,
        )

    # --- final --------------------------------------------------------------------------------
    def replace_month(
        self, spec: DatasetSpec, month: date, log: Log, run_id: str = "", staged_sha256: str | None = None
    ) -> ReplaceResult:
        from google.api_core import exceptions as gexc
        from google.cloud import bigquery

        started = time.monotonic()
        file_name = _checked_file_name(spec.file_name(month))
        cost = JobCost()
        file_param = [bigquery.ScalarQueryParameter("file", "STRING", file_name)]
        with self.client(f"replace {file_name}") as client:
            self._ensure_datasets(client)
            final = self._ensure_final(client, spec)
            dataset, staging_ds = self._datasets()
            staging_name = f"{spec.table_name}_{month_suffix(month)}"
            try:
                staged_month = StagedMonth.parse(
                    client.get_table(self._ref(client, staging_ds, staging_name)).description
                )
            except gexc.NotFound:
                raise WarehouseError(
                    f"no staging table {self.staging_table(spec, month)}: materialize the "
                    f"{spec.name} staging asset for {month:%Y-%m} first"
                ) from None
            staging = self._q(client, staging_ds, staging_name)
            final_q = f"`{final}`"
            pickup = bq_ident(spec.pickup_column)
            month_params = [
                *file_param,
                bigquery.ScalarQueryParameter("start", "TIMESTAMP", f"{month:%Y-%m-%d} 00:00:00"),
                bigquery.ScalarQueryParameter("end", "TIMESTAMP", f"{next_month(month):%Y-%m-%d} 00:00:00"),
            ]
            ((staged, in_month, previous),) = [
                tuple(r.values())
                for r in self._query(
                    client,
                    (
                        f"SELECT (SELECT COUNT(*) FROM {staging}), "
                        f"(SELECT COUNTIF({pickup} >= @start AND {pickup} < @end) FROM {staging}), "
                        f"(SELECT COUNT(*) FROM {final_q} WHERE filename = @file)"
                    ),
                    cost,
                    month_params,
                )
            ]
            if staged == 0:
                raise WarehouseError(
                    f"staging table {self.staging_table(spec, month)} is empty: "
                    "re-materialize the staging asset for this month"
                )
            refuse_wrong_month(file_name, month, staged, in_month)
            cols = ", ".join(bq_ident(c) for c in spec.column_names)
            insert = (
                f"INSERT INTO {final_q} (unique_row_id, filename, {cols})\n"
                f"SELECT unique_row_id, filename, {cols} FROM {staging}\n"
                f"QUALIFY ROW_NUMBER() OVER (PARTITION BY unique_row_id ORDER BY {cols}) = 1"
            )
            estimated = self._estimate(client, insert)
            # One transaction: a failure anywhere rolls back to the month's previous rows. Among
            # rows sharing an id the smallest by all columns is kept (load jobs keep no file order).
            self._query(
                client,
                (
                    "BEGIN TRANSACTION;\n"
                    f"DELETE FROM {final_q} WHERE filename = '{file_name}';\n"
                    f"{insert};\n"
                    "COMMIT TRANSACTION;"
                ),
                cost,
            )
            ((final_rows, distinct_ids),) = [
                tuple(r.values())
                for r in self._query(
                    client,
                    f"SELECT COUNT(*), COUNT(DISTINCT unique_row_id) FROM {final_q} WHERE filename = @file",
                    cost,
                    file_param,
                )
            ]
        log(
            f"{file_name}: {final_rows:,} trips in {self.final_table(spec)} "
            f"({staged - final_rows:,} duplicates dropped, {previous:,} rows replaced)"
        )
        return ReplaceResult(
            table=self.final_table(spec),
            # A Parquet month's staging kept each trip's first row already: the file's rows read.
            staged_rows=staged_month.read if staged_month else staged,
            final_rows=final_rows,
            previous_rows=previous,
            seconds=time.monotonic() - started,
            bytes_processed=cost.processed,
            bytes_billed=cost.billed,
            bytes_estimated=estimated,
            ids=IdProfile(rows=final_rows, distinct_ids=distinct_ids),
        )

    def _month_query(self, spec: DatasetSpec, month: date, select: str, params: list) -> tuple | None:
        from google.api_core import exceptions as gexc
        from google.cloud import bigquery

        file_name = _checked_file_name(spec.file_name(month))
        with self.client(f"check {file_name}") as client:
            ref = self._ref(client, self._datasets()[0], spec.table_name)
            try:
                client.get_table(ref)
            except gexc.NotFound:
                return None
            rows = self._query(
                client,
                f"SELECT {select} FROM `{ref}` WHERE filename = @file",
                JobCost(),
                [bigquery.ScalarQueryParameter("file", "STRING", file_name), *params],
            )
            return tuple(rows[0].values())

    def id_profile(self, spec: DatasetSpec, month: date) -> IdProfile:
        row = self._month_query(spec, month, "COUNT(*), COUNT(DISTINCT unique_row_id)", [])
        return IdProfile(*row) if row else IdProfile(rows=0, distinct_ids=0)

    def id_summary(self, spec: DatasetSpec, month: date) -> IdSummary | None:
        # The first 60 bits as two INT64 sums, 28 and 32 bits (20 M values of 60 bits would
        # overflow INT64, and NUMERIC is not exact on the emulator); joined here exactly.
        row = self._month_query(
            spec,
            month,
            "COUNT(*), COALESCE(SUM(CAST(CONCAT('0x', SUBSTR(unique_row_id, 1, 7)) AS INT64)), 0), "
            "COALESCE(SUM(CAST(CONCAT('0x', SUBSTR(unique_row_id, 8, 8)) AS INT64)), 0)",
            [],
        )
        if row is None or not row[0]:  # no table, or not this month: not loaded
            return None
        return IdSummary(rows=int(row[0]), id_sum=(int(row[1]) << 32) + int(row[2]))

    def pickup_profile(self, spec: DatasetSpec, month: date) -> PickupProfile:
        from google.cloud import bigquery

        pickup = bq_ident(spec.pickup_column)
        row = self._month_query(
            spec,
            month,
            f"COUNT(*), COUNTIF({pickup} >= @start AND {pickup} < @end)",
            [
                bigquery.ScalarQueryParameter("start", "TIMESTAMP", f"{month:%Y-%m-%d} 00:00:00"),
                bigquery.ScalarQueryParameter("end", "TIMESTAMP", f"{next_month(month):%Y-%m-%d} 00:00:00"),
            ],
        )
        return PickupProfile(*row) if row else PickupProfile(rows=0, in_month_rows=0)

    # --- reference tables and dbt --------------------------------------------------------------
    def load_reference(self, ref: ReferenceSpec, lake_file: LakeFile, log: Log) -> ReferenceResult:
        from google.api_core import exceptions as gexc
        from google.cloud import bigquery

        started = time.monotonic()
        if not lake_file.uri.startswith("gs://"):
            raise WarehouseError(
                f"BigQuery loads {ref.file_name} from Cloud Storage, but the lake "
                f"holds it at {lake_file.uri}: use the GCS lake (TAXI_TARGET=gcp)"
            )
        cost = JobCost()
        with self.client(f"load {ref.file_name}") as client:
            self._ensure_datasets(client)
            table_ref = self._ref(client, self._datasets()[0], ref.name)
            try:
                previous = int(client.get_table(table_ref).num_rows or 0)
            except gexc.NotFound:
                previous = 0
            # WRITE_TRUNCATE: the load replaces the table atomically when it succeeds.
            config = bigquery.LoadJobConfig(
                schema=self._schema(ref.columns),
                source_format=bigquery.SourceFormat.CSV,
                skip_leading_rows=1,
                write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
                max_bad_records=0,
                encoding="UTF-8",
            )
            job = client.load_table_from_uri(lake_file.uri, table_ref, job_config=config)
            try:
                job.result()
            except gexc.GoogleAPICallError as exc:
                raise BadInputError(f"{ref.file_name}: {_job_message(exc, job)}") from None
            cost.add(job)
            rows = int(job.output_rows or 0)
        log(f"{ref.file_name}: {rows:,} rows in {table_ref}")
        return ReferenceResult(
            table=table_ref,
            rows=rows,
            previous_rows=previous,
            seconds=time.monotonic() - started,
            bytes_processed=cost.processed,
            bytes_billed=cost.billed,
        )

    def dbt_model_figures(
        self, model: str, sums: Sequence[str], month_column: str | None = None, months: Sequence[date] = ()
    ) -> dict[date | None, tuple]:
        from google.cloud import bigquery

        dataset = validate_identifier(self.dbt_dataset, "TAXI_DBT_SCHEMA")
        figures = "".join(f", SUM({bq_ident(validate_identifier(c, 'dbt model column'))})" for c in sums)
        with self.client(f"read {model}") as client:
            table = self._q(client, dataset, validate_identifier(model, "dbt model"))
            if month_column is None:
                rows = self._query(client, f"SELECT NULL, COUNT(*){figures} FROM {table}", JobCost())
            else:
                month = bq_ident(validate_identifier(month_column, "dbt model column"))
                rows = self._query(
                    client,
                    f"SELECT {month}, COUNT(*){figures} FROM {table} "
                    f"WHERE {month} IN UNNEST(@months) GROUP BY 1",
                    JobCost(),
                    [bigquery.ArrayQueryParameter("months", "DATE", list(months))],
                )
        return {row[0]: tuple(row.values()[1:]) for row in rows}

    def dbt_env(self) -> dict[str, str]:
        """The `bigquery` output of profiles.yml: project, location, datasets, endpoint, auth.

        Auth: a key file as `service-account`; the base64 key decoded into a private temporary
        key file (mode 600, removed at exit) as `service-account`; anonymous (emulators) as
        `oauth-secrets` with a placeholder token; else `oauth` (application-default credentials).
        """
        bq = self.bigquery
        env = {
            "TAXI_DBT_TARGET": "bigquery",
            "TAXI_GCP_PROJECT": bq.project or "",
            "TAXI_GCP_LOCATION": bq.location or "US",
            "TAXI_WAREHOUSE_SCHEMA": self._datasets()[0],
            "TAXI_DBT_SCHEMA": validate_identifier(self.dbt_dataset, "TAXI_DBT_SCHEMA"),
            "TAXI_BQ_API_ENDPOINT": getattr(bq, "api_endpoint", None) or "",
            "TAXI_DBT_BQ_METHOD": "oauth",
            "TAXI_DBT_BQ_KEYFILE": "",
            "TAXI_DBT_BQ_TOKEN": "",
            "TAXI_DBT_BQ_MAX_BYTES_BILLED": str(self.max_bytes_billed),
        }
        if bq.gcp_credentials:
            env.update(
                TAXI_DBT_BQ_METHOD="service-account", TAXI_DBT_BQ_KEYFILE=_b64_keyfile(bq.gcp_credentials)
            )
        elif getattr(bq, "credentials_file", None):
            env.update(TAXI_DBT_BQ_METHOD="service-account", TAXI_DBT_BQ_KEYFILE=bq.credentials_file)
        elif getattr(bq, "anonymous", False):
            env.update(TAXI_DBT_BQ_METHOD="oauth-secrets", TAXI_DBT_BQ_TOKEN="anonymous-emulator")
        return env


_KEYFILES: dict[str, str] = {}


def _b64_keyfile(b64: str) -> str:
    """dbt-bigquery reads a key from a file or from YAML; the decoded key goes to a 600 file in a
    700 folder of this process, once, deleted at exit."""
    import atexit
    import json
    import shutil

    from taxi_platform.settings import read_credentials_b64

    if b64 not in _KEYFILES:
        info = read_credentials_b64(b64)
        folder = tempfile.mkdtemp(prefix="taxi-dbt-key-")
        path = os.path.join(folder, "key.json")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
        with os.fdopen(fd, "w") as fh:
            json.dump(info, fh)
        atexit.register(shutil.rmtree, folder, True)
        _KEYFILES[b64] = path
    return _KEYFILES[b64]


def _checked_file_name(file_name: str) -> str:
    if not _SAFE_FILE_NAME.fullmatch(file_name):
        raise WarehouseError(f"refusing file name {file_name!r} in BigQuery SQL")
    return file_name


def raise_if_over_budget(exc: Exception, job: Any, limit: int) -> None:
    """BigQuery refused a query for costing more than maximum_bytes_billed: say which setting."""
    reasons = {e.get("reason") for e in (getattr(exc, "errors", None) or []) if isinstance(e, dict)}
    if "bytesBilledLimitExceeded" in reasons:
        raise WarehouseError(
            f"a query would bill more than TAXI_BQ_MAX_BYTES_BILLED={limit:,} bytes and was not run "
            f"({_job_message(exc, job)}); raise the setting if the cost is expected"
        ) from None


def _job_message(exc: Exception, job: Any = None) -> str:
    """The job's own error texts (BigQuery lists one per bad row/field), else the API message."""
    texts = []
    for error in getattr(job, "errors", None) or getattr(exc, "errors", None) or []:
        message = error.get("message") if isinstance(error, dict) else None
        if message and message not in texts:
            texts.append(message)
    text = "; ".join(texts[:5]) or getattr(exc, "message", None) or str(exc)
    return " ".join(text.split())[:2000]
