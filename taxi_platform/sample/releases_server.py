"""A GitHub-compatible Releases API over a mirror folder, for showing the release sensor offline.

Each top-level folder of the mirror is a release whose tag is the folder name; its files are the
release's assets (`updated_at` from the file's mtime, `size`, `browser_download_url` pointing at
the mirror's own file URL). Registered on a `MirrorServer`:

    GET <prefix>/releases?per_page=&page=     the releases, newest first, with a `Link` header
    GET <prefix>/releases/tags/<tag>          one release

Answers carry an `ETag`; a request with a matching `If-None-Match` gets `304 Not Modified`. So
`TAXI_RELEASES_API_URL=<mirror base url><prefix>` points the release sensor at the mirror.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from taxi_platform.sample.mirror import (
    CONTENT_TYPES,
    MANIFEST_SUFFIX,
    MirrorRequestHandler,
    MirrorServer,
)

DEFAULT_PREFIX = "/api"
DEFAULT_PER_PAGE, MAX_PER_PAGE = 30, 100  # as GitHub


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(int(timestamp), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _stable_id(text: str) -> int:
    return zlib.crc32(text.encode()) & 0x7FFFFFFF


def _visible(path: Path) -> bool:
    # Dot-files are temporary; `*.csv.gz.json` manifests are the generator's bookkeeping.
    return path.is_file() and not path.name.startswith(".") and not path.name.endswith(MANIFEST_SUFFIX)


def release_json(root: Path, tag: str, base_url: str, api_url: str) -> dict:
    folder = root / tag
    files = sorted((p for p in folder.iterdir() if _visible(p)), key=lambda p: p.name)
    assets = []
    for path in files:
        stat = path.stat()
        assets.append(
            {
                "id": _stable_id(f"{tag}/{path.name}"),
                "url": f"{api_url}/releases/assets/{_stable_id(f'{tag}/{path.name}')}",
                "name": path.name,
                "label": "",
                "content_type": CONTENT_TYPES.get(path.suffix, "application/octet-stream"),
                "state": "uploaded",
                "size": stat.st_size,
                "download_count": 0,
                "created_at": _iso(stat.st_mtime),
                "updated_at": _iso(stat.st_mtime),
                "browser_download_url": f"{base_url}/{tag}/{path.name}",
            }
        )
    created = _iso(min((p.stat().st_mtime for p in files), default=folder.stat().st_mtime))
    return {
        "id": _stable_id(tag),
        "url": f"{api_url}/releases/{_stable_id(tag)}",
        "tag_name": tag,
        "name": tag,
        "draft": False,
        "prerelease": False,
        "created_at": created,
        "published_at": created,
        "assets": assets,
    }


def releases(root: Path, base_url: str, api_url: str) -> list[dict]:
    """Every release of the mirror, newest first (then by tag), as the list endpoint orders them."""
    tags = [p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    found = [release_json(root, tag, base_url, api_url) for tag in tags]
    return sorted(found, key=lambda r: (r["created_at"], r["tag_name"]), reverse=True)


def _base_urls(request: MirrorRequestHandler, prefix: str) -> tuple[str, str]:
    host = request.headers.get("Host") or f"127.0.0.1:{request.server.server_address[1]:d}"
    base = f"http://{host}"
    return base, base + prefix


def _answer_json(
    request: MirrorRequestHandler, payload: object, headers: dict[str, str] | None = None
) -> None:
    body = (json.dumps(payload, indent=1) + "\n").encode()
    etag = f'"{hashlib.sha256(body).hexdigest()[:40]}"'
    wanted = {t.strip() for t in (request.headers.get("If-None-Match") or "").split(",")}
    common = {"ETag": etag, "X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "60", **(headers or {})}
    if etag in wanted or f"W/{etag}" in wanted:
        request.send_response(HTTPStatus.NOT_MODIFIED)
        for name, value in common.items():
            request.send_header(name, value)
        request.send_header("Content-Length", "0")
        request.end_headers()
        return
    request.send_body(body, "application/json; charset=utf-8", headers=common)


def _int_param(query: dict[str, list[str]], name: str, default: int) -> int:
    try:
        return max(1, int(query.get(name, [str(default)])[0]))
    except ValueError:
        return default


def register_releases_api(server: MirrorServer, prefix: str = DEFAULT_PREFIX) -> str:
    """Add the API routes to `server`; returns the prefix (the API base is `base_url + prefix`)."""
    prefix = "/" + prefix.strip("/")

    def list_releases(request: MirrorRequestHandler, _match: re.Match[str]) -> None:
        base, api = _base_urls(request, prefix)
        query = parse_qs(urlsplit(request.path).query)
        per_page = min(_int_param(query, "per_page", DEFAULT_PER_PAGE), MAX_PER_PAGE)
        page = _int_param(query, "page", 1)
        everything = releases(request.server.mirror.root, base, api)
        last = max(1, -(-len(everything) // per_page))
        links = []

        def link(n: int, rel: str) -> None:
            links.append(f'<{api}/releases?per_page={per_page}&page={n}>; rel="{rel}"')

        if page < last:
            link(page + 1, "next")
            link(last, "last")
        if page > 1:
            link(1, "first")
            link(page - 1, "prev")
        chunk = everything[(page - 1) * per_page : page * per_page]
        _answer_json(request, chunk, {"Link": ", ".join(links)} if links else None)

    def one_release(request: MirrorRequestHandler, match: re.Match[str]) -> None:
        tag = match.group("tag")
        root = request.server.mirror.root
        if tag.startswith(".") or "/" in tag or not (root / tag).is_dir():
            request.send_body(b'{"message": "Not Found"}\n', "application/json", HTTPStatus.NOT_FOUND)
            return
        base, api = _base_urls(request, prefix)
        _answer_json(request, release_json(root, tag, base, api))

    server.add_route(re.escape(prefix) + r"/releases/?", list_releases)
    server.add_route(re.escape(prefix) + r"/releases/tags/(?P<tag>[^/]+)", one_release)
    return prefix
