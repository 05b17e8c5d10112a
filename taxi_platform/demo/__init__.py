"""`taxi-platform demo`: generated months of the chosen source's files, served on 127.0.0.1 as the
source serves them (the TLC's CloudFront layout, or the course's GitHub releases), loaded through
the platform's own assets (zones, trips, dbt) into the configured warehouse, then a summary.

    run.py      the demo: write, serve, load month by month, report
    mirrors.py  how each source is imitated (also `taxi-platform mirror`)
    report.py   the table of the months loaded, the top pickup zones, a failure's root cause
"""
