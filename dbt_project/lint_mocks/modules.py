"""`modules` for sqlfluff's jinja templater (dbt's `modules.re`, …)."""

import datetime  # noqa: F401
import re  # noqa: F401
