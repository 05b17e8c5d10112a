"""How a download fails, in messages that name the URL (masked), the month and the reason: a file
the release does not hold, a failure retrying cannot fix, or giving up after retries."""

from __future__ import annotations

from taxi_platform.redact import mask_url


class ReleaseFileNotFound(FileNotFoundError):
    """The release has no such file (HTTP 404 / missing local file, or a 403 taken as missing)."""

    def __init__(self, url: str, what: str, status: int = 404) -> None:
        self.url = url
        self.status = status
        why = "(404): no release file for it"
        if status != 404:
            why = f"(HTTP {status}, which the server answers for a file it does not hold): not published yet"
        super().__init__(f"{what}: {mask_url(url)} was not found {why}")


class DownloadFailed(RuntimeError):
    """Gave up after retries; the message names the URL, the month and the last error."""


class PermanentDownloadError(DownloadFailed):
    """A failure that retrying cannot fix (an HTTP 4xx, a redirect loop, a full disk, a folder
    that cannot be written, the deadline passed); the message names the URL or path."""
