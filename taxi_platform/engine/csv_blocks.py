"""A CSV.gz release file as blocks of whole lines, decompressed once, in bounded memory.

Each block holds the raw bytes of consecutive data lines (the header is checked and left out),
every line ending in a newline, blank lines removed, and the file line number of each line known
(`Block.file_line`). The bytes are never re-encoded: the PostgreSQL writer sends them as they are.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from taxi_platform.source.gzip_stream import GzipDecompressor, TruncatedGzipError


class ByteReader(Protocol):
    """What the engine reads a file through: a binary file, or a wrapper that hashes its bytes."""

    def read(self, size: int = -1, /) -> bytes: ...


BOM = b"\xef\xbb\xbf"
READ_SIZE = 1 << 20
BLOCK_BYTES = 2 << 20  # decompressed bytes per block: the unit of work of the pipeline
MAX_LINE_BYTES = 1 << 20  # a trip line holds ~200 bytes: a longer one is not a trip file


class BadCsvError(ValueError):
    """The file cannot be read as the dataset's CSV; the message names file and line."""


@dataclass(frozen=True)
class LinePositions:
    """Where a block's lines stand in the file: enough to name a line, without its bytes."""

    first_line: int  # file line number of the first line (the header is line 1)
    # File line numbers skipped inside the block (blank lines), ascending: usually none.
    skipped: tuple[int, ...] = ()

    def file_line(self, index: int) -> int:
        """The file line number of the block's `index`-th line (0-based)."""
        line = self.first_line + index
        for skipped in self.skipped:
            if skipped <= line:
                line += 1
        return line


@dataclass
class Block:
    data: bytes  # whole lines, each ending in b"\n" (b"\r\n" files keep their \r)
    ends: np.ndarray  # int64 offset just after each line's newline
    positions: LinePositions

    @property
    def rows(self) -> int:
        return len(self.ends)

    @property
    def first_line(self) -> int:
        return self.positions.first_line

    @property
    def skipped(self) -> tuple[int, ...]:
        return self.positions.skipped

    def file_line(self, index: int) -> int:
        return self.positions.file_line(index)

    def line_text(self, index: int, limit: int = 200) -> str:
        start = int(self.ends[index - 1]) if index else 0
        text = self.data[start : int(self.ends[index])].rstrip(b"\r\n")
        return text[:limit].decode("utf-8", "replace")


def expected_header(column_names: tuple[str, ...]) -> bytes:
    return ",".join(column_names).encode()


def read_blocks(
    fh: ByteReader, file_name: str, column_names: tuple[str, ...], block_bytes: int | None = None
) -> Iterator[Block]:
    """The data lines of a gzip CSV as blocks; the header must name the columns in order."""
    block_bytes = block_bytes or BLOCK_BYTES
    gz = GzipDecompressor()
    pending = bytearray()
    next_line = 1  # file line number of the first line in `pending`
    header_done = False
    line_end = b"\n"  # the header's: a last line without one gets it

    def chunks() -> Iterator[bytes]:
        while data := fh.read(READ_SIZE):
            try:
                yield from gz.feed(data)
            except ValueError as exc:
                raise BadCsvError(f"{file_name}: {exc}") from None
        try:
            yield gz.finish()
        except TruncatedGzipError as exc:
            raise BadCsvError(f"{file_name}: {exc}") from None

    for chunk in chunks():
        pending += chunk
        if not header_done:
            end = pending.find(b"\n")
            if end < 0:
                if len(pending) > 1 << 20:
                    raise BadCsvError(f"{file_name} line 1: no line end in the first MB (not a CSV file?)")
                continue
            _check_header(pending[:end], file_name, column_names)
            line_end = b"\r\n" if pending[:end].endswith(b"\r") else b"\n"
            del pending[: end + 1]
            next_line, header_done = 2, True
        while len(pending) >= block_bytes:
            # The last line end within the first block_bytes (or, for a longer line, after them).
            cut = pending.rfind(b"\n", 0, block_bytes) + 1 or pending.find(b"\n", block_bytes) + 1
            if not cut:
                if len(pending) > block_bytes + MAX_LINE_BYTES:
                    line = next_line + pending.count(b"\n", 0, block_bytes)
                    raise BadCsvError(
                        f"{file_name} line {line}: a line longer than "
                        f"{MAX_LINE_BYTES >> 20} MB (not a trip file?)"
                    )
                break  # one line longer than what has arrived: wait for its end
            block = _block(bytes(pending[:cut]), next_line)
            del pending[:cut]
            next_line += block.rows + len(block.skipped)
            if block.rows:
                yield block
    if not header_done:
        if pending.strip():
            _check_header(bytes(pending), file_name, column_names)
            return
        raise BadCsvError(f"{file_name}: the file is empty (no header line)")
    if pending:
        if not pending.endswith(b"\n"):
            pending += line_end
        block = _block(bytes(pending), next_line)
        if block.rows:
            yield block


def _check_header(line: bytes | bytearray, file_name: str, column_names: tuple[str, ...]) -> None:
    text = bytes(line).removeprefix(BOM).rstrip(b"\r")
    if text != expected_header(column_names):
        raise BadCsvError(
            f"{file_name} line 1: the header does not match the spec ({header_mismatch(text, column_names)})"
        )


def header_mismatch(header: bytes, column_names: tuple[str, ...], shown: int = 5) -> str:
    """What differs between a header line and the spec's columns, in a bounded message (the
    line may be anything: a whole file without line ends quotes at most a few hundred bytes)."""
    got = header[:4096].decode("utf-8", "replace").split(",")
    missing = [c for c in column_names if c not in got]
    unexpected = [c for c in got if c not in column_names]

    def names(items: list[str]) -> str:
        listed = ", ".join(c[:40] + ("…" if len(c) > 40 else "") for c in items[:shown])
        return listed + (f" and {len(items) - shown} more" if len(items) > shown else "")

    return "; ".join(
        part
        for part in (
            f"missing {names(missing)}" if missing else "",
            f"unexpected {names(unexpected)}" if unexpected else "",
            "same columns in another order" if not missing and not unexpected else "",
        )
        if part
    )


def _block(data: bytes, first_line: int) -> Block:
    arr = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(arr == 10) + 1
    starts = np.empty_like(ends)
    starts[0], starts[1:] = 0, ends[:-1]
    lengths = ends - starts
    blank = lengths == 1
    if lengths.min(initial=3) <= 2:  # "\n" or "\r\n": blank lines (rare) are dropped
        blank |= (lengths == 2) & (arr[np.maximum(ends - 2, 0)] == 13)
    if not blank.any():
        return Block(data=data, ends=ends, positions=LinePositions(first_line))
    keep = ~blank
    skipped = tuple((first_line + np.flatnonzero(blank)).tolist())
    pieces = [data[s:e] for s, e in zip(starts[keep].tolist(), ends[keep].tolist())]
    compact = b"".join(pieces)
    return Block(data=compact, ends=np.cumsum(lengths[keep]), positions=LinePositions(first_line, skipped))
