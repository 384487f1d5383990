"""Celery task wrappers; the work lives in ``worker.pipeline.stages``."""
