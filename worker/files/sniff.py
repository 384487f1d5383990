"""What audio format a file is, read from its first bytes, never from its name or URL.

A stem URL ending in ``.wav`` may serve MP3 bytes; a file named by its URL would then be read,
tagged and delivered as the wrong format. :func:`audio_suffix` looks at the container's
signature instead: RIFF/WAVE, FORM/AIFF, fLaC, OggS (Opus or Vorbis), an ID3 tag or an MPEG
audio frame, an ADTS AAC frame, an MP4 ``ftyp`` box. Bytes that are none of these give None.
"""

from __future__ import annotations

from pathlib import Path

#: How many leading bytes :func:`sniff_file` reads: enough for a first Ogg page's codec header.
HEAD_BYTES = 64


def _mpeg_frame(head: bytes) -> bool:
    """An MPEG audio frame header: 11 sync bits, a version that exists, a layer that is not
    the reserved 00 (ADTS AAC has 00 there), a bitrate index that is not 1111."""
    if len(head) < 3 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version, layer = (head[1] >> 3) & 0x3, (head[1] >> 1) & 0x3
    return version != 0x1 and layer != 0x0 and head[2] >> 4 != 0xF


def _adts_frame(head: bytes) -> bool:
    return len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0


def audio_suffix(head: bytes) -> str | None:
    """The file suffix (``.wav``, ``.mp3``, ...) of the audio format ``head`` starts with;
    None when it is no audio format this project knows."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return ".wav"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return ".aiff"
    if head[:4] == b"fLaC":
        return ".flac"
    if head[:4] == b"OggS":
        return ".opus" if b"OpusHead" in head else ".ogg"
    if head[:3] == b"ID3" or _mpeg_frame(head):
        return ".mp3"
    if _adts_frame(head):
        return ".aac"
    if head[4:8] == b"ftyp":
        return ".m4a"
    return None


def sniff_file(path: Path) -> str | None:
    """:func:`audio_suffix` of the file at ``path``."""
    with open(path, "rb") as handle:
        return audio_suffix(handle.read(HEAD_BYTES))


__all__ = ["HEAD_BYTES", "audio_suffix", "sniff_file"]
