"""One gzip CSV file as N line-aligned parts, each streamed to its own COPY (both cores at work).

Part k holds the lines that start in the k-th N-th of the decompressed bytes: its split points are
"just after the first line end at or after k/N of the uncompressed size". Every part decompresses
the file from the start (skipping what precedes it: cheap next to parsing the rows in the
database), so each part is computed independently and the parts always fit together exactly, even
when the size is only an estimate. The uncompressed size comes from the gzip trailer (ISIZE, the
size modulo 4 GiB of the last member): a wrong estimate only makes the parts uneven.
"""

from __future__ import annotations

import os
import threading
from typing import BinaryIO, Callable, Iterator

from taxi_platform.source.gzip_stream import DecompressingReader, iter_decompressed


class CopyCancelled(Exception):
    """Raised inside a part's read() when another part failed: its COPY is abandoned."""


def gzip_uncompressed_size(opener: Callable[[], BinaryIO]) -> int | None:
    """The gzip trailer's ISIZE (uncompressed size mod 2**32), or None when it cannot be read."""
    try:
        with opener() as fh:
            fh.seek(-4, os.SEEK_END)
            tail = fh.read(4)
    except Exception:  # not seekable (a stream), too short, ...: load as one part
        return None
    return int.from_bytes(tail, "little") if len(tail) == 4 else None


class PartReader(DecompressingReader):
    """`.read(n)` over part `index` of `parts` (line-aligned) of a gzip file, for COPY FROM STDIN.

    `lines_before` is the number of lines (header included) before the part, known once its first
    byte was read: the file line number of the part's line n is `lines_before + n`.
    """

    def __init__(self, fh: BinaryIO, index: int, parts: int, total: int,
                 stop: threading.Event | None = None, on_progress=None) -> None:
        super().__init__(fh, on_progress=on_progress)
        self._fh = fh
        self._chunks = self._part(iter_decompressed(fh), index, parts, total)
        self._stop = stop
        self.lines_before = 0

    def read(self, size: int = -1) -> bytes:
        if self._stop is not None and self._stop.is_set():
            self.error = CopyCancelled("another COPY stream of this file failed")
            raise self.error
        return super().read(size)

    def close(self) -> None:
        self._fh.close()

    def _part(self, chunks: Iterator[bytes], index: int, parts: int, total: int) -> Iterator[bytes]:
        start_target = total * index // parts if index else None
        end_target = total * (index + 1) // parts if index + 1 < parts else None
        pos = 0  # absolute offset of `chunk` in the decompressed file
        started = start_target is None
        for chunk in chunks:
            begin = 0
            if not started:
                cut = _line_end_at_or_after(chunk, pos, start_target)
                if cut is None:
                    self.lines_before += chunk.count(b"\n")
                    pos += len(chunk)
                    continue
                self.lines_before += chunk.count(b"\n", 0, cut)
                started, begin = True, cut
            if end_target is not None:
                # The same rule as the next part's start (not searched from `begin`: equal
                # targets give equal split points, and an empty part).
                cut = _line_end_at_or_after(chunk, pos, end_target)
                if cut is not None:
                    if cut > begin:
                        yield chunk[begin:cut]
                    return  # the rest belongs to the next part: stop decompressing
            if begin < len(chunk):
                yield chunk[begin:] if begin else chunk
            pos += len(chunk)


def _line_end_at_or_after(chunk: bytes, pos: int, target: int) -> int | None:
    """Index just after the first b'\\n' in `chunk` at absolute offset >= target (None: not here)."""
    start = max(0, target - pos)
    if start >= len(chunk):
        return None
    found = chunk.find(b"\n", start)
    return None if found < 0 else found + 1
