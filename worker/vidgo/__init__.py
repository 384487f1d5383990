"""Vidgo's HTTP API: the typed client, its answer parsers and its error mapping."""

from vidgo_stems.vidgo.client import VidgoClient, submit_payload
from vidgo_stems.vidgo.parse import StemUrls, SubmitResult, TaskDetail, VidgoStatus

__all__ = ["StemUrls", "SubmitResult", "TaskDetail", "VidgoClient", "VidgoStatus", "submit_payload"]
