"""What the tests share besides fixtures: test platforms (PostgreSQL, the GCP emulators, a real
Dagster stack), independent expectations, readers of run results, and the process-leak check.
The conftest.py files hold the fixtures and import from here; tests import from here too."""
