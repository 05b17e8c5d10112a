"""The local release mirror: file layout, manifest reuse, and the HTTP server."""

from __future__ import annotations

import csv
import http.client
import io
import json
import urllib.error
import urllib.request
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from support.paths import REPO, ZONES_CSV

from taxi_platform.datasets import GREEN, YELLOW
from taxi_platform.sample import MirrorServer, mirror_path, write_mirror
from taxi_platform.sample.zones import ZONE_SEED, write_mirror_zones, zone_rows

MONTHS = [date(2019, 12, 1), date(2020, 1, 1)]


def _rows(spec, month: date) -> int:
    return 300 if spec is GREEN else 500 + month.month


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mirror")
    write_mirror(root, [YELLOW, GREEN], MONTHS, rows=_rows, seed=5)
    return root


@pytest.fixture(scope="module")
def server(mirror: Path):
    with MirrorServer(mirror) as running:
        yield running


def _get(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def _raw_get(server: MirrorServer, path: str) -> int:
    """Status of a request sent with the path exactly as given (urllib would not alter it either,
    but http.client makes that explicit)."""
    host, port = server.base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


# ---------------------------------------------------------------- write_mirror


def test_layout_is_the_release_url_layout(tmp_path: Path) -> None:
    files = write_mirror(tmp_path, [YELLOW, GREEN], MONTHS, rows=_rows, seed=5)
    expected = {
        f"{s.release_tag}/{s.release_tag}_tripdata_{m:%Y-%m}.csv.gz" for s in (YELLOW, GREEN) for m in MONTHS
    }
    on_disk = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert on_disk == expected | {name + ".json" for name in expected}
    assert [(f.dataset, f.month, f.rows) for f in files] == [
        (s.name, m, _rows(s, m)) for s in (YELLOW, GREEN) for m in MONTHS
    ]
    assert all(
        f.path == mirror_path(tmp_path, YELLOW if f.dataset == "yellow" else GREEN, f.month) for f in files
    )


def test_manifest_describes_the_file(tmp_path: Path) -> None:
    [generated] = write_mirror(tmp_path, [GREEN], [date(2020, 2, 1)], rows=1200, seed=4, line_ending="\r\n")
    manifest = json.loads(generated.path.with_name(generated.path.name + ".json").read_text())
    assert manifest["seed"] == 4 and manifest["rows"] == 1200
    assert manifest["line_ending"] == "\r\n" and manifest["month"] == "2020-02-01"
    assert manifest["size"] == generated.path.stat().st_size
    assert manifest["duplicate_rows"] == generated.duplicate_rows >= 1
    assert manifest["unattributed_rows"] == generated.unattributed_rows == 36


def test_second_run_reuses_files(tmp_path: Path) -> None:
    first = write_mirror(tmp_path, [YELLOW], MONTHS, rows=400, seed=1)
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    again = write_mirror(tmp_path, [YELLOW], MONTHS, rows=400, seed=1)
    assert again == first
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == stamps


@pytest.mark.parametrize("change", [{"rows": 401}, {"seed": 2}, {"line_ending": "\r\n"}])
def test_changed_settings_regenerate(tmp_path: Path, change: dict) -> None:
    settings: dict[str, Any] = {"rows": 400, "seed": 1, "line_ending": "\n"}
    [old] = write_mirror(tmp_path, [YELLOW], [MONTHS[0]], **settings)
    before = old.path.read_bytes()
    [new] = write_mirror(tmp_path, [YELLOW], [MONTHS[0]], **(settings | change))
    expected = settings | change
    assert new.path == old.path and new.path.read_bytes() != before
    assert (new.rows, new.line_ending) == (expected["rows"], expected["line_ending"])


def test_damaged_file_is_regenerated(tmp_path: Path) -> None:
    [generated] = write_mirror(tmp_path, [YELLOW], [MONTHS[0]], rows=400)
    good = generated.path.read_bytes()
    generated.path.write_bytes(good[: len(good) // 2])  # a cut-short file, manifest left in place
    write_mirror(tmp_path, [YELLOW], [MONTHS[0]], rows=400)
    assert generated.path.read_bytes() == good


# ---------------------------------------------------------------- MirrorServer


def test_serves_files_byte_identically(server: MirrorServer, mirror: Path) -> None:
    path = mirror_path(mirror, YELLOW, MONTHS[1])
    status, headers, body = _get(f"{server.base_url}/yellow/{path.name}")
    assert status == 200 and body == path.read_bytes()
    assert headers["Content-Type"] == "application/gzip"
    assert int(headers["Content-Length"]) == path.stat().st_size


def test_head_gives_length_without_body(server: MirrorServer, mirror: Path) -> None:
    path = mirror_path(mirror, GREEN, MONTHS[0])
    status, headers, body = _get(f"{server.base_url}/green/{path.name}", method="HEAD")
    assert status == 200 and body == b""
    assert int(headers["Content-Length"]) == path.stat().st_size


def test_csv_files_are_text_csv(server: MirrorServer, mirror: Path) -> None:
    (mirror / "misc").mkdir(exist_ok=True)
    (mirror / "misc" / "taxi_zone_lookup.csv").write_bytes(b'"LocationID"\r\n1\r\n')
    status, headers, body = _get(f"{server.base_url}/misc/taxi_zone_lookup.csv")
    assert (status, headers["Content-Type"], body) == (200, "text/csv", b'"LocationID"\r\n1\r\n')


def test_the_zone_file_is_the_real_table_of_the_dbt_seed(tmp_path: Path) -> None:
    """The mirror serves the public zone table the repository ships as a dbt seed, in the release
    file's format (quoted strings, CRLF): the very bytes of the real file."""
    seed = REPO / "dbt_project" / "seeds" / "taxi_zone_lookup.csv"
    assert ZONE_SEED == seed
    path = write_mirror_zones(tmp_path)
    assert path == tmp_path / "misc" / "taxi_zone_lookup.csv"
    with MirrorServer(tmp_path) as server:
        status, headers, body = _get(f"{server.base_url}/misc/taxi_zone_lookup.csv")
    assert (status, headers["Content-Type"]) == (200, "text/csv")
    assert body == seed.read_bytes() == ZONES_CSV.read_bytes()
    lines = body.split(b"\r\n")
    assert lines[0] == b'"LocationID","Borough","Zone","service_zone"' and lines[-1] == b""
    assert len(lines) == 1 + 265 + 1 and b"\n" not in b"".join(lines)
    rows = {
        int(r[0]): tuple(r[1:])
        for r in csv.reader(io.StringIO(body.decode(), newline=""))
        if r[0] != "LocationID"
    }
    assert list(rows) == list(range(1, 266))
    assert rows[1] == ("EWR", "Newark Airport", "EWR")
    assert rows[132] == ("Queens", "JFK Airport", "Airports")
    assert rows[138] == ("Queens", "LaGuardia Airport", "Airports")
    assert rows[161] == ("Manhattan", "Midtown Center", "Yellow Zone")
    assert rows[264] == ("Unknown", "NV", "N/A") and rows[265] == ("Unknown", "NA", "N/A")
    assert zone_rows() == [(i, *rows[i]) for i in rows]
    assert not any("Zone " in zone for _, zone, _ in rows.values())  # no generated names left


@pytest.mark.parametrize(
    "path", ["/yellow/yellow_tripdata_2018-01.csv.gz", "/nothing/here", "/yellow", "/yellow/", "/"]
)
def test_missing_files_and_folders_are_404(server: MirrorServer, path: str) -> None:
    status, _, body = _get(server.base_url + path)
    assert status == 404
    assert b"yellow_tripdata" not in body  # no directory listing


def test_hidden_files_are_not_served(server: MirrorServer, mirror: Path) -> None:
    (mirror / "yellow" / ".partial.tmp").write_bytes(b"half a file")
    assert _get(f"{server.base_url}/yellow/.partial.tmp")[0] == 404


@pytest.mark.parametrize(
    "path",
    ["/../secret.txt", "/yellow/../../secret.txt", "/yellow/%2e%2e/%2e%2e/secret.txt", "/..%2fsecret.txt"],
)
def test_paths_cannot_escape_the_root(server: MirrorServer, mirror: Path, path: str) -> None:
    (mirror.parent / "secret.txt").write_text("secret")
    assert _raw_get(server, path) == 403


def test_symlinks_out_of_the_root_are_refused(server: MirrorServer, mirror: Path) -> None:
    (mirror.parent / "outside.txt").write_text("outside")
    link = mirror / "link.txt"
    if not link.exists():
        link.symlink_to(mirror.parent / "outside.txt")
    assert _get(f"{server.base_url}/link.txt")[0] == 403


def test_requests_are_quiet_unless_verbose(mirror: Path, capfd: pytest.CaptureFixture) -> None:
    url_path = f"/yellow/{mirror_path(mirror, YELLOW, MONTHS[0]).name}"
    with MirrorServer(mirror) as quiet:
        _get(quiet.base_url + url_path)
        _get(quiet.base_url + "/missing")
    assert capfd.readouterr().err == ""
    with MirrorServer(mirror, verbose=True) as loud:
        _get(loud.base_url + url_path)
    assert url_path in capfd.readouterr().err


def test_start_and_stop(mirror: Path) -> None:
    server = MirrorServer(mirror)
    with pytest.raises(RuntimeError):
        server.base_url  # noqa: B018 - not running yet
    server.start()
    url = server.base_url
    try:
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
        assert _get(url + "/nope")[0] == 404
    finally:
        server.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "/nope", timeout=5)
    server.stop()  # stopping twice is harmless


def test_routes_can_be_added_ahead_of_static_files(mirror: Path) -> None:
    def releases(request, match) -> None:
        body = json.dumps({"repo": match["repo"]}).encode()
        request.send_body(body, "application/json")

    with MirrorServer(mirror) as server:
        server.add_route(r"/repos/(?P<repo>[^/]+/[^/]+)/releases", releases)
        status, headers, body = _get(server.base_url + "/repos/DataTalksClub/nyc-tlc-data/releases")
        assert (status, headers["Content-Type"]) == (200, "application/json")
        assert json.loads(body) == {"repo": "DataTalksClub/nyc-tlc-data"}
        static = f"/yellow/{mirror_path(mirror, YELLOW, MONTHS[0]).name}"
        assert _get(server.base_url + static)[0] == 200
