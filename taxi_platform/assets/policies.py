"""How the asset layer's steps run: the lake's IO manager, the warehouse's concurrency pool, the
retry and backfill policies, and the tags of the runs the release sensor requests."""

import warnings

import dagster as dg

LAKE_IO_MANAGER_KEY = "lake_io_manager"
# Concurrency pool of every step that writes the warehouse; its limit is set in dagster.yaml.
WAREHOUSE_POOL = "taxi_warehouse"
# The downloader retries HTTP errors itself (seconds apart); this step-level policy covers longer
# outages (it gave up) and anything else transient: 30 s, 60 s, 120 s later. A 404 inside the
# published range, an invalid file and a permanent error (HTTP 4xx, a redirect loop, a full disk,
# the download deadline) are final (Failure(allow_retries=False)).
DOWNLOAD_RETRY_POLICY = dg.RetryPolicy(
    max_retries=3, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
# A range is one run (UI backfills and `dagster asset materialize --partition-range`, which
# Dagster 1.13 allows only for single-run assets). The parameter is beta in 1.13: its warning
# would be printed at every load of the code location, so it is silenced, for it alone.
RANGE_POLICY = dg.BackfillPolicy.single_run()
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)
# Tags of the runs tlc_release_sensor requests: "new" or "republished", and the file's version.
RELEASE_CHANGE_TAG = "taxi/release_change"
FILE_VERSION_TAG = "taxi/file_version"
