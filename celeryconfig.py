"""Celery's configuration module, for running Celery's own commands from a checkout:

    celery -A vidgo_stems.celery_app --config celeryconfig inspect active

Every setting and the reason for it live in :mod:`vidgo_stems.celeryconfig`, mapped from the
environment (``REDIS_URL``, ``VIDGO_STEMS_*``) as the worker maps them; this module exposes them
under the names Celery reads. ``vidgo-stems worker`` needs none of this.
"""

from vidgo_stems.celeryconfig import celery_config
from vidgo_stems.settings import get_settings

globals().update(celery_config(get_settings()))
