"""vidgo-stems: turn audio URLs into verified stems through Vidgo, on Celery and Redis."""

__version__ = "0.1.0"
