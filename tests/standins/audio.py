"""Small WAV helpers for the speech stand-in: make a tone, measure a clip."""

from __future__ import annotations

import io
import math
import struct
import wave


def sine_wav(seconds: float = 0.25, sample_rate: int = 22050, frequency: float = 440.0) -> bytes:
    """A mono 16-bit PCM WAV holding a sine tone."""
    return wave_bytes(sine_pcm(seconds, sample_rate, frequency), sample_rate)


def sine_pcm(seconds: float, sample_rate: int, frequency: float = 440.0) -> bytes:
    """Raw mono 16-bit little-endian samples of a sine tone."""
    count = int(seconds * sample_rate)
    return b"".join(
        struct.pack("<h", int(12000 * math.sin(2 * math.pi * frequency * i / sample_rate)))
        for i in range(count)
    )


def wave_bytes(pcm: bytes, sample_rate: int) -> bytes:
    """Wrap mono 16-bit samples in a WAV container."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm)
    return buffer.getvalue()


def wav_duration(data: bytes) -> float | None:
    """Length in seconds of a WAV clip, or None if `data` is not a WAV file."""
    try:
        with wave.open(io.BytesIO(data), "rb") as clip:
            return clip.getnframes() / float(clip.getframerate())
    except (wave.Error, EOFError, ZeroDivisionError):
        return None
