"""The benchmark behind `manage.py bench_send`: an offer e-mailed to a large segment."""
