"""The benchmark behind `manage.py bench`: synthetic data, floors, the naive pipeline, pages."""
