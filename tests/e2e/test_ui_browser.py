"""The Dagster UI of the running instance in headless Chromium (the Debian package, driven by
Playwright): the asset graph shows the platform's groups and assets, a partitioned asset's page
lists exactly the months the backfill materialized, each month's check results are filed under it,
and the revenue mart's trips and revenue are plotted per month. Screenshots are kept in test-artifacts/."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from support.e2e_backfill import MONTHS, Backfill, mart_trips_per_partition
from support.e2e_stack import ARTIFACTS, Stack

from taxi_platform.datasets import YELLOW
from taxi_platform.partitions import dataset_partitions

monthly_partitions = dataset_partitions(YELLOW)

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 60_000


@pytest.fixture
def page():
    from playwright import sync_api  # the dev extra: a missing install fails, it is not skipped

    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-system-deps.sh (make test does)")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1600, "height": 1000})
            context.set_default_timeout(TIMEOUT_MS)
            yield context.new_page()
        finally:
            browser.close()


def dismiss_first_visit_popup(page) -> None:
    """The 'Join the Dagster community' dialog shown on a first visit."""
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(state="visible", timeout=5_000)
    except Exception:  # noqa: BLE001 - not shown (already dismissed in this browser profile)
        return
    skip.click()
    skip.wait_for(state="hidden")


def test_asset_graph_and_materialized_partitions_in_the_ui(dagster_stack: Stack, backfill: Backfill, page):
    stack = dagster_stack
    assert backfill.status in ("COMPLETED", "COMPLETED_SUCCESS")

    # The global asset graph: the platform's groups.
    page.goto(f"{stack.web_url}/asset-groups")
    dismiss_first_visit_popup(page)
    page.get_by_text("Global asset lineage").first.wait_for()
    for group in ("yellow", "green", "transform"):
        page.get_by_text(group, exact=True).first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "ui-asset-graph.png"))

    # The yellow group's graph: its three assets.
    page.goto(f"{stack.web_url}/locations/taxi_platform/asset-groups/yellow")
    dismiss_first_visit_popup(page)
    for name in ("yellow_tripdata_file", "yellow_tripdata_staging", "yellow_tripdata"):
        page.get_by_text(name, exact=True).first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "ui-yellow-group.png"))

    # A partitioned asset's partitions: exactly the backfilled months are materialized.
    page.goto(f"{stack.web_url}/assets/warehouse/yellow_tripdata?view=partitions")
    dismiss_first_visit_popup(page)
    page.get_by_text(f"Materialized ({len(MONTHS)})").first.wait_for()
    page.get_by_text(re.compile(r"^Missing \(\d+\)$")).first.click()  # hide the missing months
    months = [f"{m:%Y-%m-01}" for m in MONTHS]
    for month in months:
        page.get_by_text(month, exact=True).first.wait_for()
    page.wait_for_timeout(500)
    listed = set(re.findall(r"\b\d{4}-\d{2}-01\b", page.inner_text("body")))
    # The months in the list, plus the range bar's end labels (the first and the latest partition);
    # no missing month (such as the month before the latest) is listed any more.
    axis = {monthly_partitions.get_first_partition_key(), monthly_partitions.get_last_partition_key()}
    assert listed - axis == set(months) - axis and set(months) <= listed, listed
    page.screenshot(path=str(ARTIFACTS / "ui-yellow-partitions.png"))


def test_per_month_check_results_and_the_marts_plotted_figures(
    dagster_stack: Stack, dbt_months_built: float, page
):
    stack = dagster_stack
    months = [f"{m:%Y-%m-01}" for m in MONTHS]

    # The final table's checks are per month: the latest result names its month, and the check's
    # history lists one result per backfilled month.
    page.goto(f"{stack.web_url}/assets/warehouse/yellow_tripdata?view=checks")
    dismiss_first_visit_popup(page)
    page.get_by_text("unique_row_id_is_unique").first.wait_for()
    page.get_by_text("Latest execution").first.wait_for()
    latest = page.inner_text("body").split("Latest execution", 1)[1]
    assert re.search(rf"Partition\s+{months[-1]}", latest), latest[:600]
    assert re.search(rf"month\s+{months[-1][:7]}", latest), latest[:600]
    page.screenshot(path=str(ARTIFACTS / "ui-yellow-checks.png"))
    page.get_by_text("Execution history", exact=True).first.click()
    page.get_by_text(months[0], exact=True).first.wait_for()
    history = page.inner_text("body").split("Execution history", 1)[1]
    assert all(month in history for month in months), history[:800]
    page.screenshot(path=str(ARTIFACTS / "ui-yellow-check-history.png"))

    # The mart's materialization of a month shows that month's trips and revenue ...
    expected = mart_trips_per_partition(stack)
    assert set(expected) == set(months)
    page.goto(f"{stack.web_url}/assets/dbt/dm_monthly_zone_revenue?view=events")
    dismiss_first_visit_popup(page)
    row = page.locator("tr", has=page.get_by_text("trips", exact=True)).first
    row.wait_for()
    assert row.inner_text().split() == ["trips", str(expected[months[-1]])]
    page.locator("tr", has=page.get_by_text("revenue", exact=True)).first.wait_for()

    # ... and the overview plots them per partition.
    page.goto(f"{stack.web_url}/assets/dbt/dm_monthly_zone_revenue")
    dismiss_first_visit_popup(page)
    page.get_by_text("Plots", exact=True).first.click()
    page.get_by_text("When graphing values by partition").first.wait_for()
    plotted = page.inner_text("body").split("Metadata", 1)[1].split("When graphing values by partition")[0]
    assert {"trips", "revenue", "dagster/row_count"} <= set(plotted.split()), plotted
    page.screenshot(path=str(ARTIFACTS / "ui-mart-plots.png"), full_page=True)
