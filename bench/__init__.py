"""The month-load benchmark (`make bench`): see bench/run.py and bench/RESULTS.md."""
