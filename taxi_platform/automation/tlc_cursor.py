"""The TLC sensor's memory between ticks (`TlcCursor`, JSON in the sensor's cursor): each file's
last seen version (`FileVersion`), the back-off state, and where the round-robin of older months
stopped."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

CURSOR_VERSION = 1


@dataclass(frozen=True)
class FileVersion:
    """What identifies one upload of a file: its ETag, Last-Modified and size."""

    etag: str | None
    last_modified: str | None
    size: int

    @property
    def key(self) -> str:
        return f"{self.etag or '-'}|{self.last_modified or '-'}|{self.size}"


@dataclass
class TlcCursor:
    files: dict[str, FileVersion] = field(default_factory=dict)  # "<dataset>/<YYYY-MM>" -> version
    baselined: bool = False
    failures: int = 0  # consecutive ticks that had to back off
    retry_at: str | None = None  # ISO time before which nothing is asked
    older: dict[str, str] = field(default_factory=dict)  # dataset -> the older month checked last

    def dump(self) -> str:
        return json.dumps(
            {
                "v": CURSOR_VERSION,
                "baselined": self.baselined,
                "failures": self.failures,
                "retry_at": self.retry_at,
                "older": self.older,
                "files": {k: [v.etag, v.last_modified, v.size] for k, v in sorted(self.files.items())},
            },
            separators=(",", ":"),
        )

    @classmethod
    def load(cls, text: str | None) -> TlcCursor:
        if not text:
            return cls()
        try:
            raw = json.loads(text)
            if raw.get("v") != CURSOR_VERSION:
                return cls()
            files = {str(k): FileVersion(v[0], v[1], int(v[2])) for k, v in raw["files"].items()}
            retry_at = raw.get("retry_at")
            if retry_at is not None:
                datetime.fromisoformat(retry_at)  # refuse what is not a time
            return cls(
                files=files,
                baselined=bool(raw["baselined"]),
                failures=int(raw.get("failures", 0)),
                retry_at=retry_at,
                older={str(k): str(v) for k, v in raw.get("older", {}).items()},
            )
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return cls()  # unreadable (edited by hand): start over, as a first tick
