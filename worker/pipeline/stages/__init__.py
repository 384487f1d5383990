"""The pipeline stages as plain functions over a StageContext; Celery lives in ``tasks/``."""

from vidgo_stems.pipeline.stages.context import Outcome, StageContext
from vidgo_stems.pipeline.stages.download import run_download
from vidgo_stems.pipeline.stages.poll import poll_countdown, run_poll
from vidgo_stems.pipeline.stages.postprocess import run_postprocess
from vidgo_stems.pipeline.stages.stem import run_part
from vidgo_stems.pipeline.stages.submit import run_submit
from vidgo_stems.pipeline.states import Step, TaskName

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
