"""Streaming download of a release file to disk, with retries and verification in the same pass.

- Retries with exponential backoff (honouring Retry-After, at most a minute) only what can succeed
  later: 429, 5xx, connection errors and read timeouts. A 404 fails at once naming the URL and the
  month; other answers (403, 400, a redirect loop, an invalid URL) and local errors (disk full, a
  folder that cannot be written) fail at once as PermanentDownloadError, naming the URL or path.
- A 403 is permanent unless the caller says otherwise (`on_forbidden`): the TLC's CloudFront answers
  403 both when it throttles and for a file it does not hold, so its source retries a 403 for a
  month that should exist and takes it as "not published" for a month that should not.
- A body shorter than its Content-Length is retried, then named: "<file>: cut short: N of M bytes".
- Each read waits at most `timeout` seconds; the whole download (every attempt and the waits
  between them) at most `deadline` seconds, so a server dribbling bytes cannot hold a run forever.
- The bytes are stored as sent: a server that labels a .csv.gz with `Content-Encoding: gzip` does
  not get it decompressed on the way (the file is the gzip file).
- The bytes are hashed, decompressed and checked (gzip completeness, header, field counts) while
  they are written, so a bad file is caught before anything downstream runs, without a second read.
- A `.part` file left by a killed download is removed by the next download into the same folder
  once it has not changed for STALE_PART_SECONDS.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

from taxi_platform.datasets import DatasetSpec
from taxi_platform.redact import mask_url
from taxi_platform.source.download_errors import DownloadFailed, PermanentDownloadError, ReleaseFileNotFound
from taxi_platform.source.http_stream import MAX_BACKOFF_SECONDS, Forbidden, RetryableError, stream_file
from taxi_platform.source.verify import CsvInspector, Inspector, InvalidReleaseFile

PROGRESS_EVERY_SECONDS = 10.0
DEFAULT_DEADLINE_SECONDS = 3600.0
STALE_PART_SECONDS = 900.0  # a live download writes its .part file far more often than this


@dataclasses.dataclass(frozen=True)
class DownloadResult:
    url: str
    path: Path
    bytes: int
    sha256: str
    rows: int
    decompressed_bytes: int
    line_ending: str
    attempts: int
    seconds: float
    # What the inspector found beyond rows (see verify.Inspection); Parquet files fill them.
    file_format: str = "csv.gz"
    schema_fingerprint: str | None = None
    row_groups: int | None = None
    columns: tuple[tuple[str, str], ...] = ()


def download_release_file(url: str, dest: Path, spec: DatasetSpec, month: date, **options) -> DownloadResult:
    """A monthly trip file: gzip, header and field counts verified while it streams."""
    return download_file(
        url,
        dest,
        what=f"{spec.name} {month:%Y-%m}",
        new_inspector=lambda: CsvInspector(spec, spec.file_name(month)),
        **options,
    )


def download_file(
    url: str,
    dest: Path,
    *,
    what: str,
    new_inspector: Callable[[], Inspector],
    attempts: int = 5,
    timeout: float = 60.0,
    deadline: float = DEFAULT_DEADLINE_SECONDS,
    backoff_base: float = 1.0,
    log: Callable[[str], None] = lambda _m: None,
    sleep: Callable[[float], None] = time.sleep,
    on_forbidden: Forbidden = "fail",
) -> DownloadResult:
    """Stream `url` into `dest`, verifying it on the way; `dest` only exists if it is valid.

    `what` names the file in messages (`yellow 2019-01`); `new_inspector` verifies one attempt;
    `on_forbidden` says what an HTTP 403 means (see Forbidden).
    """
    shown = mask_url(url)
    part = dest.with_name(dest.name + ".part")
    started = time.monotonic()
    give_up_at = started + deadline
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_parts(dest.parent, log)
    except OSError as exc:
        raise _local_error(what, exc, dest.parent) from None
    last_error = ""
    for attempt in range(1, attempts + 1):
        try:
            result = _attempt(
                url, part, what, new_inspector(), timeout, give_up_at, deadline, log, on_forbidden
            )
        except RetryableError as exc:
            last_error = str(exc)
            part.unlink(missing_ok=True)
            if attempt == attempts:
                break
            delay = exc.retry_after
            if delay is None:
                delay = backoff_base * 2 ** (attempt - 1) * (0.5 + random.random() / 2)
            delay = min(delay, MAX_BACKOFF_SECONDS)
            if time.monotonic() + delay >= give_up_at:
                raise PermanentDownloadError(
                    f"{what}: {shown} timed out: no complete download within {deadline:.0f} s "
                    f"(TAXI_DOWNLOAD_DEADLINE); last error: {last_error}"
                ) from None
            log(f"{shown}: {exc}; retry {attempt}/{attempts - 1} in {delay:.1f}s")
            sleep(delay)
            continue
        except (ReleaseFileNotFound, InvalidReleaseFile, DownloadFailed):
            part.unlink(missing_ok=True)
            raise
        except OSError as exc:  # our own disk: full, read-only, not a folder
            part.unlink(missing_ok=True)
            raise _local_error(what, exc, part) from None
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        try:
            part.replace(dest)
        except OSError as exc:
            part.unlink(missing_ok=True)
            raise _local_error(what, exc, dest) from None
        return DownloadResult(
            url=url, path=dest, attempts=attempt, seconds=time.monotonic() - started, **result
        )
    raise DownloadFailed(f"{what}: gave up on {shown} after {attempts} attempts; last error: {last_error}")


def _local_error(what: str, exc: OSError, path: Path) -> PermanentDownloadError:
    where = exc.filename or path
    return PermanentDownloadError(
        f"{what}: cannot write {where}: {exc.strerror or exc} (the download folder is under TAXI_HOME)"
    )


def _remove_stale_parts(folder: Path, log: Callable[[str], None]) -> None:
    now = time.time()
    for stale in folder.glob("*.part"):
        try:
            if now - stale.lstat().st_mtime > STALE_PART_SECONDS:
                stale.unlink()
                log(f"removed {stale.name}, left by a download that did not finish")
        except FileNotFoundError:
            pass  # another run removed or finished it
        except OSError as exc:  # best effort: a leftover that cannot go must not stop downloads
            log(f"could not remove {stale.name}, left by a download that did not finish: {exc.strerror}")


def _attempt(
    url: str,
    part: Path,
    what: str,
    inspector: Inspector,
    timeout: float,
    give_up_at: float,
    deadline: float,
    log: Callable[[str], None],
    on_forbidden: Forbidden,
) -> dict:
    sha = hashlib.sha256()
    written = 0
    last_report = time.monotonic()
    with open(part, "wb") as out:
        for chunk, total in stream_file(url, what, timeout, on_forbidden):
            out.write(chunk)
            sha.update(chunk)
            inspector.feed(chunk)
            written += len(chunk)
            now = time.monotonic()
            if now >= give_up_at:
                raise PermanentDownloadError(
                    f"{what}: {mask_url(url)} timed out: {written:,} bytes received in "
                    f"{deadline:.0f} s (TAXI_DOWNLOAD_DEADLINE), the file is not complete"
                )
            if now - last_report >= PROGRESS_EVERY_SECONDS:
                of = f" of {total:,}" if total else ""
                log(f"{what}: {written:,}{of} bytes downloaded")
                last_report = now
    inspection = inspector.finish(local_copy=part)
    # The inspection's fields (rows, schema, ...) are DownloadResult's, by the same names.
    return dict(bytes=written, sha256=sha.hexdigest(), **dataclasses.asdict(inspection))
