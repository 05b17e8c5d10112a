"""A month of trips into PostgreSQL: written once by the ingest engine, then swapped in.

Staging (`stage_month`), one transaction:
  the month's new table is created in the staging schema, shaped like a partition of the final
  table (`filename` stored, with the CHECK that lets ATTACH skip its scan); one COPY fills it with
  the file's lines, each prefixed with its trip id by the engine (`engine/copy_stream.py`), while
  the engine is still reading the file; the later occurrences of the ids the engine saw more than
  once are deleted (file order = the table's physical order: one COPY stream into a table created
  in the same transaction appends its rows in order); the table's comment records what it holds.
  Created in the COPY's transaction, the table is written FROZEN and, with wal_level=minimal (the
  embedded server), without WAL.

Swap (`swap_month`), one transaction, milliseconds: the old partition is detached and dropped, the
staged table moves into the warehouse schema and is attached as the month's partition. Readers see
the old month or the new one, never a mix; a failure anywhere leaves the previous month intact.

The staging table is tagged with the run that staged it and the sha256 of the file it read. Two
loads of the same month at once: their staging steps take turns (the later one's table wins). A
swap attaches the staged table if it holds the file its own run staged (same sha256: the same
bytes, whichever run staged them); a swap that finds no staging table but a partition attached
from that file (by the other run's swap, or by its own before a re-execution) has nothing left to
do. A swap whose run staged another file than the one now staged or attached fails, naming the
run that superseded it, and changes nothing: a run's metadata only describes what it committed.

The swap waits at most LOCK_TIMEOUT for the final table's locks (DETACH/ATTACH take an exclusive
lock): while it waits behind a long reader, every new reader would queue behind it. On a timeout it
rolls back, lets the readers run, and tries again, up to SWAP_ATTEMPTS times. (A staging load of
the month still writing is waited for without a limit: it ends by itself.)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date

import psycopg2
import psycopg2.errors
from psycopg2 import sql

from taxi_platform.datasets import DatasetSpec
from taxi_platform.engine.copy_stream import IdPrefixedLines
from taxi_platform.engine.csv_blocks import BadCsvError
from taxi_platform.engine.duplicates import DuplicateTracker
from taxi_platform.lake.handles import LakeFile
from taxi_platform.partitions import next_month
from taxi_platform.warehouse.base import BadInputError, Log, WarehouseError, refuse_wrong_month
from taxi_platform.warehouse.postgres_copy import HashingReader, copy_error_message, progress_reporter
from taxi_platform.warehouse.postgres_ddl import column_defs, csv_column_list
from taxi_platform.warehouse.staged_month import StagedMonth

LOCK_NAMESPACE = 0x7A11  # first key of every advisory lock we take
LOCK_TIMEOUT = "2s"  # per swap attempt; the readers it would block wait no longer than this
SWAP_ATTEMPTS = 30
SWAP_RETRY_SECONDS = 2.0


class SupersededLoad(WarehouseError):
    """The month was staged again from another file by another run before this run's swap."""


def stage_month(
    wh, cur, spec: DatasetSpec, month: date, lake_file: LakeFile, run_id: str, log: Log
) -> StagedMonth:
    """Fill the month's staging table from the file (see the module's docstring)."""
    file_name = spec.file_name(month)
    staging = wh._staging(spec, month)
    name = wh.month_table_name(spec, month)
    cur.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LOCK_NAMESPACE, f"staging:{file_name}"))
    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(staging))
    cur.execute(
        sql.SQL(
            "CREATE TABLE {} (unique_row_id text NOT NULL, filename text NOT NULL DEFAULT {} "
            "CONSTRAINT {} CHECK (filename = {}), {})"
        ).format(
            staging,
            sql.Literal(file_name),
            sql.Identifier(f"{name}_filename"),
            sql.Literal(file_name),
            column_defs(spec.columns),
        )
    )
    copy = (
        sql.SQL("COPY {} (unique_row_id, {}) FROM STDIN WITH (FORMAT csv, FREEZE)")
        .format(staging, csv_column_list(spec))
        .as_string(cur.connection)
    )
    tracker = DuplicateTracker(wh.engine_memory, spill_dir=wh.engine_spill_dir())
    try:
        with lake_file.open() as raw:
            fh = HashingReader(raw)
            lines = IdPrefixedLines(
                fh, spec, file_name, tracker, month=month, on_block=progress_reporter(file_name, log)
            )
            try:
                cur.copy_expert(copy, lines, size=1 << 20)
            except psycopg2.Error as exc:
                if isinstance(lines.error, BadCsvError):
                    raise BadInputError(str(lines.error)) from None
                if lines.error is not None:
                    raise lines.error from None
                if isinstance(exc, (psycopg2.DataError, psycopg2.errors.BadCopyFileFormat)):
                    raise BadInputError(copy_error_message(file_name, exc, lines.stats)) from None
                raise
            finally:
                lines.close()
            copied = cur.rowcount
            if copied != lines.stats.rows:  # never expected: COPY counts what it received
                raise WarehouseError(f"{file_name}: {lines.stats.rows:,} rows sent, {copied:,} copied")
            repeated, surplus = lines.repeated_ids()
        removed = _delete_later_occurrences(cur, staging, repeated, spec.pickup_column, month)
    finally:
        tracker.close()
    in_month = lines.stats.in_month_rows
    # `rows` is the server's count, `distinct` the engine's: they differ (and the blocking
    # uniqueness check fails) if a later occurrence was not deleted, or a row went missing.
    staged = StagedMonth(
        rows=copied - removed.deleted,
        distinct=copied - surplus,
        read=copied,
        in_month=None if in_month is None else in_month - removed.in_month,
        run_id=run_id,
        sha256=fh.hexdigest(),
    )
    refuse_wrong_month(file_name, month, staged.rows, staged.in_month)  # rolls back the staging
    cur.execute(sql.SQL("ANALYZE {}").format(staging))
    cur.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(staging, sql.Literal(staged.comment(file_name))))
    return staged


@dataclass(frozen=True)
class _Removed:
    deleted: int  # rows the server deleted
    in_month: int  # of the deleted rows, those picked up in the month


def _delete_later_occurrences(
    cur, staging: sql.Composed, ids: list[str], pickup: str, month: date
) -> _Removed:
    """Delete every row of `ids` but the first in the table's physical (= file) order.

    One scan finds those rows and their positions (a constant array: PostgreSQL hashes it); the
    later occurrences are deleted by position (a TID scan)."""
    if not ids:
        return _Removed(0, 0)
    cur.execute(
        sql.SQL(
            "SELECT unique_row_id, ctid::text, coalesce({p} >= %s AND {p} < %s, false) "
            "FROM {} WHERE unique_row_id = ANY(%s)"
        ).format(staging, p=sql.Identifier(pickup)),
        (month, next_month(month), ids),
    )
    by_id: dict[str, list[tuple[int, int, bool]]] = {}
    for row_id, ctid, in_month in cur.fetchall():
        block, offset = ctid.strip("()").split(",")
        by_id.setdefault(row_id, []).append((int(block), int(offset), in_month))
    later = [row for rows in by_id.values() for row in sorted(rows)[1:]]
    if not later:
        return _Removed(0, 0)
    cur.execute(
        sql.SQL("DELETE FROM {} WHERE ctid = ANY(%s::tid[])").format(staging),
        ([f"({b},{o})" for b, o, _ in later],),
    )
    return _Removed(cur.rowcount, sum(1 for *_, in_month in later if in_month))


@dataclass(frozen=True)
class SwapResult:
    staged: StagedMonth
    previous_rows: int
    swapped: bool = True  # False: the month's latest staged rows were attached already


def swap_month(
    wh,
    conn,
    spec: DatasetSpec,
    month: date,
    run_id: str,
    sha256: str | None = None,
    log: Log = lambda _m: None,
) -> SwapResult:
    """Attach the month's staging table as its partition (see the module's docstring); `sha256`:
    the file this run staged (None: this run staged nothing, attach what is staged)."""
    for attempt in range(1, SWAP_ATTEMPTS + 1):
        try:
            with conn.cursor() as cur:
                result = _swap(wh, cur, spec, month, run_id, sha256)
            conn.commit()
            return result
        except psycopg2.errors.LockNotAvailable:
            conn.rollback()
            if attempt == SWAP_ATTEMPTS:
                raise WarehouseError(
                    f"{spec.file_name(month)}: the swap waited {SWAP_ATTEMPTS} times {LOCK_TIMEOUT} for "
                    f"readers of {wh.final_table(spec)} to let go; nothing changed: run it again "
                    "when the long queries are done"
                ) from None
            log(
                f"{spec.file_name(month)}: long readers hold {wh.final_table(spec)}; swap attempt "
                f"{attempt} waited {LOCK_TIMEOUT}, trying again in {SWAP_RETRY_SECONDS:.0f} s"
            )
            time.sleep(SWAP_RETRY_SECONDS)
    raise AssertionError("unreachable")


def _swap(wh, cur, spec: DatasetSpec, month: date, run_id: str, sha256: str | None) -> SwapResult:
    file_name = spec.file_name(month)
    warehouse = wh.warehouse_schema_name()
    name = wh.month_table_name(spec, month)
    staging, partition = wh._staging(spec, month), wh._partition(spec, month)
    cur.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LOCK_NAMESPACE, f"final:{file_name}"))
    cur.execute("SELECT to_regclass(%s)", (wh.staging_table(spec, month),))
    if cur.fetchone()[0] is not None:
        # Locked before its comment is read: a staging load of the month that is still writing
        # its table is waited for, and what is read is what will be attached.
        cur.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(staging))
    cur.execute(
        "SELECT obj_description(to_regclass(%s), 'pg_class'), to_regclass(%s), "
        "obj_description(to_regclass(%s), 'pg_class')",
        (wh.staging_table(spec, month), f"{warehouse}.{name}", f"{warehouse}.{name}"),
    )
    staging_comment, old_partition, partition_comment = cur.fetchone()
    staged = StagedMonth.parse(staging_comment)
    if staged is None:
        in_place = StagedMonth.parse(partition_comment)
        if in_place is not None:
            # The rows staged last are attached already: by another run's swap (two loads of the
            # month at once), or by this run's before a re-execution.
            _same_file(in_place, sha256, run_id, file_name, "is attached")
            return SwapResult(staged=in_place, previous_rows=in_place.rows, swapped=False)
        raise WarehouseError(
            f"no staging table {wh.staging_table(spec, month)}: materialize the {spec.name} "
            f"staging asset for {month:%Y-%m} first"
        )
    _same_file(staged, sha256, run_id, file_name, "is staged")
    # From here on the final table's locks: waited for at most LOCK_TIMEOUT per attempt (the locks
    # above, a staging load of the month still writing, are waited for as long as it takes).
    cur.execute("SET LOCAL lock_timeout = %s", (LOCK_TIMEOUT,))
    previous = 0
    if old_partition:
        recorded = StagedMonth.parse(partition_comment)
        if recorded is not None:
            previous = recorded.rows
        else:
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(partition))
            previous = cur.fetchone()[0]
        cur.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(wh._final(spec), partition))
        cur.execute(sql.SQL("DROP TABLE {}").format(partition))
    cur.execute(sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(staging, sql.Identifier(warehouse)))
    cur.execute(
        sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES IN ({})").format(
            wh._final(spec), partition, sql.Literal(file_name)
        )
    )
    cur.execute(
        sql.SQL("COMMENT ON TABLE {} IS {}").format(
            partition, sql.Literal(staged.comment(file_name).replace("staged by", "loaded by"))
        )
    )
    return SwapResult(staged=staged, previous_rows=previous)


def _same_file(found: StagedMonth, sha256: str | None, run_id: str, file_name: str, where: str) -> None:
    """Refuse to commit (or to claim) rows read from another file than the one this run staged."""
    if sha256 is None or found.sha256 is None or found.sha256 == sha256:
        return
    raise SupersededLoad(
        f"{file_name}: this run staged the file with sha256 {sha256[:12]}…, but run "
        f"{found.run_id or '?'} staged it again since, from another file (sha256 "
        f"{found.sha256[:12]}…), which {where} now; this run commits nothing and the month holds "
        f"that run's rows. Materialize the month again to load the file now in the lake."
    )
