"""Celery task wrappers; the work lives in ``worker.stages``."""
