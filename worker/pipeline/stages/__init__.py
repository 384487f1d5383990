"""The pipeline stages as plain functions over a StageContext; Celery lives in ``tasks/``."""

from worker.pipeline.stages.context import Outcome, StageContext
from worker.pipeline.stages.download import run_download
from worker.pipeline.stages.poll import poll_countdown, run_poll
from worker.pipeline.stages.postprocess import run_postprocess
from worker.pipeline.stages.stem import run_part
from worker.pipeline.stages.submit import run_submit
from worker.pipeline.states import Step, TaskName

__all__ = [
    "Outcome",
    "StageContext",
    "Step",
    "TaskName",
    "poll_countdown",
    "run_download",
    "run_part",
    "run_poll",
    "run_postprocess",
    "run_submit",
]
