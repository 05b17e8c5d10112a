"""The GCP target's room: service-account keys (`credentials.py`), what Google accepts as names
(`names.py`) and the Google clients as Dagster resources (`resources.py`)."""
