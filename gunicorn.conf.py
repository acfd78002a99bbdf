"""gunicorn's settings, read when it starts in this folder (`make run`, production alike)."""

# Tokens of customers' links and search terms never reach the access log.
logger_class = "config.gunicorn_logging.RedactingGunicornLogger"
