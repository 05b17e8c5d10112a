"""The documentation names only files that exist: every repository path a page mentions (in
backquotes or as a link) is in the checkout, unless the page says it is made at run time."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted(
    [REPO / "README.md", REPO / "CONTRIBUTING.md", *REPO.glob("docs/*.md"), *REPO.glob("bench/*.md")]
)

# The top-level folders and files of the repository a path can start with.
ROOTS = ("taxi_platform/", "tests/", "docs/", "bench/", "dbt_project/", "scripts/", "deploy/", ".ci/")
# Written at run time or by a command (dbt parse, make install, a benchmark, a test run).
MADE_AT_RUN_TIME = re.compile(
    r"(^|/)(target|\.venv|\.venv-bqemulator|\.taxi_home|results|logs|dbt_packages|test-artifacts)(/|$)"
    r"|manifest\.json$|\.json$"
)
BACKQUOTED = re.compile(r"`([^`\s]+)`")
LINKED = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def mentioned_paths(page: Path) -> set[str]:
    text = page.read_text()
    paths = set()
    for token in BACKQUOTED.findall(text):
        token = token.rstrip(".,:;")
        if token.startswith(ROOTS) and "*" not in token and "<" not in token and "{" not in token:
            paths.add(token.split("::")[0].split(":")[0])
    for link in LINKED.findall(text):
        if not link.startswith(("http://", "https://", "mailto:")):
            paths.add(str((page.parent / link).resolve().relative_to(REPO)))
    return {p for p in paths if not MADE_AT_RUN_TIME.search(p)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_path_a_page_names_exists(page: Path) -> None:
    missing = sorted(p for p in mentioned_paths(page) if not (REPO / p).exists())
    assert not missing, f"{page.relative_to(REPO)} names files that do not exist: {missing}"


def test_the_check_finds_paths() -> None:
    # The patterns must see the module table of CONTRIBUTING: a check that finds nothing proves nothing.
    paths = mentioned_paths(REPO / "CONTRIBUTING.md")
    assert any(p.startswith("taxi_platform/warehouse/") for p in paths)
    assert "docs/settings.md" in paths
