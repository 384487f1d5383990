"""Celery task wrappers; the work lives in ``vidgo_stems.pipeline.stages``."""
