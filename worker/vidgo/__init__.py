"""Vidgo's HTTP API: the typed client, its answer parsers and its error mapping."""

from worker.vidgo.client import VidgoClient, submit_payload
from worker.vidgo.parse import StemUrls, SubmitResult, TaskDetail, VidgoStatus

__all__ = ["StemUrls", "SubmitResult", "TaskDetail", "VidgoClient", "VidgoStatus", "submit_payload"]
