"""What a listing of the GitHub release files is made of: the files (`ReleaseAsset`), what is
remembered of each page to ask it conditionally next time (`PageState`), and one listing's result
(`Listing`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ReleaseAsset:
    """One file of a release, as the API describes it."""

    tag: str
    name: str
    size: int
    updated_at: str  # ISO-8601 as the API gives it, e.g. 2022-03-01T12:00:00Z
    download_url: str
    id: int | None = None

    @property
    def version(self) -> str:
        """What makes a re-publication: a different upload time or size under the same name."""
        return f"{self.updated_at}|{self.size}"


@dataclass(frozen=True)
class PageState:
    """What a listing remembers of one page, to ask it conditionally next time."""

    url: str
    etag: str | None
    next_url: str | None


@dataclass
class Listing:
    pages: list[PageState] = field(default_factory=list)
    # The assets of the pages that answered 200; pages that answered 304 are unchanged.
    assets: list[ReleaseAsset] = field(default_factory=list)
    changed_pages: int = 0
    calls: int = 0
    truncated: bool = False  # pages were left unread: see truncated_reason
    truncated_reason: str = ""
    rate_remaining: str | None = None

    @property
    def unchanged(self) -> bool:
        return self.changed_pages == 0

    def truncate(self, reason: str) -> None:
        self.truncated, self.truncated_reason = True, reason
