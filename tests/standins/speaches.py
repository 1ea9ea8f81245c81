"""Stand-in for `ghcr.io/speaches-ai/speaches`: model downloads, transcription and speech.

Run as `python -m tests.standins.speaches` (the image's CMD is
`uvicorn --factory speaches.main:create_app`; those args are accepted too). Env: UVICORN_HOST,
UVICORN_PORT (default 8000), API_KEY (then every route, /health included, needs the bearer token,
403 otherwise, as on 0.8.3), PRELOAD_MODELS, LOG_LEVEL, ENABLE_UI, WHISPER__*. Registry rule: an
id containing "whisper" or "parakeet" is speech-to-text, "piper", "kokoro" or "tts" text-to-speech,
anything else (or "does-not-exist") is unknown. Downloads are directories in the HF hub cache."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .audio import sine_pcm, wav_duration, wave_bytes
from .server import HttpError, Reply, Request, json_reply, serve, text_reply

DEFAULT_PORT = 8000
ASR_TASK = "automatic-speech-recognition"
TTS_TASK = "text-to-speech"
TASK_MARKERS = {ASR_TASK: ("whisper", "parakeet"), TTS_TASK: ("piper", "kokoro", "tts")}
UNKNOWN_MARKER = "does-not-exist"
TRANSCRIPTION_FORMATS = ("text", "json", "verbose_json", "srt", "vtt")
SPEECH_MIME_TYPES = {
    "pcm": "audio/pcm", "mp3": "audio/mpeg", "wav": "audio/wav", "flac": "audio/flac",
    "opus": "audio/opus", "aac": "audio/aac",
}
SPEECH_SAMPLE_RATE = 22050
# Validated like Speaches' pydantic settings: a bad value stops the start.
ENV_CHOICES = {
    "LOG_LEVEL": ("debug", "info", "warning", "error", "critical"),
    "WHISPER__INFERENCE_DEVICE": ("auto", "cpu", "cuda"),
    "WHISPER__COMPUTE_TYPE": (
        "default", "auto", "int8", "int8_float16", "int8_bfloat16", "int8_float32", "int16",
        "float16", "bfloat16", "float32",
    ),
    "ENABLE_UI": ("true", "false", "1", "0", "yes", "no", "on", "off"),
}


def model_task(model_id: str) -> str | None:
    """The task the registry rule gives a model id, or None when it is unknown."""
    lowered = model_id.lower()
    if UNKNOWN_MARKER in lowered:
        return None
    return next((task for task, marks in TASK_MARKERS.items() if any(m in lowered for m in marks)), None)


def hub_cache(env: dict[str, str]) -> Path:
    """HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub."""
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"])
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]) / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


class HubCache:
    """Downloaded models as Hugging Face cache directories (`models--org--name`)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, model_id: str) -> Path:
        return self.root / ("models--" + model_id.replace("/", "--"))

    def has(self, model_id: str) -> bool:
        return (self._dir(model_id) / "refs" / "main").is_file()

    def download(self, model_id: str) -> None:
        revision = hashlib.sha1(model_id.encode()).hexdigest()
        snapshot = self._dir(model_id) / "snapshots" / revision
        snapshot.mkdir(parents=True, exist_ok=True)
        (snapshot / "config.json").write_text(json.dumps({"stand_in": True, "model_id": model_id}))
        (self._dir(model_id) / "refs" / "main").parent.mkdir(exist_ok=True)
        (self._dir(model_id) / "refs" / "main").write_text(revision)

    def delete(self, model_id: str) -> bool:
        if not self._dir(model_id).exists():
            return False
        shutil.rmtree(self._dir(model_id))
        return True

    def model_ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name[len("models--"):].replace("--", "/", 1)
            for p in self.root.glob("models--*")
            if (p / "refs" / "main").is_file()
        )


@dataclass(frozen=True)
class SpeachesSettings:
    """Where to listen, the key, and the models to fetch at start."""

    host: str
    port: int
    api_key: str | None
    preload_models: tuple[str, ...]


def parse_settings(argv: Sequence[str], env: dict[str, str]) -> SpeachesSettings:
    """Accept the image's uvicorn command line; settings come from env like Speaches' config."""
    parser = argparse.ArgumentParser(prog="uvicorn", allow_abbrev=False)
    parser.add_argument("app", nargs="?", default="speaches.main:create_app")
    parser.add_argument("--factory", action="store_true")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    args = parser.parse_args(list(argv))
    if args.app != "speaches.main:create_app":
        parser.error(f'Error loading ASGI app. Could not import module "{args.app.split(":")[0]}".')
    for name, allowed in ENV_CHOICES.items():
        value = env.get(name)
        if value is not None and value.lower() not in allowed:
            parser.error(f"1 validation error for Config\n{name.lower()}\n  Input should be one of {allowed}, got {value!r}")
    try:
        preload = json.loads(env.get("PRELOAD_MODELS") or "[]")
    except ValueError:
        parser.error("1 validation error for Config\npreload_models\n  Input should be a valid JSON list")
    if not isinstance(preload, list):
        parser.error("1 validation error for Config\npreload_models\n  Input should be a valid list")
    return SpeachesSettings(
        host=args.host or env.get("UVICORN_HOST") or "0.0.0.0",
        port=args.port or int(env.get("UVICORN_PORT") or DEFAULT_PORT),
        api_key=env.get("API_KEY") or None,
        preload_models=tuple(str(m) for m in preload),
    )


def _not_found(model_id: str) -> HttpError:
    return HttpError(404, {"detail": f"Model '{model_id}' not found"})


class SpeachesApp:
    """Speaches' HTTP API as 0.8.3 serves it."""

    name = "speaches"

    def __init__(self, settings: SpeachesSettings, cache: HubCache) -> None:
        self.settings = settings
        self.cache = cache

    def handle(self, request: Request) -> Reply:
        self._authorise(request)
        method, path = request.method, request.path
        if (method, path) == ("GET", "/health"):
            return text_reply("OK")
        if (method, path) == ("GET", "/v1/models"):
            return json_reply({"data": [self._model(m) for m in self.cache.model_ids()], "object": "list"})
        if path.startswith("/v1/models/") and len(path) > len("/v1/models/"):
            return self._model_route(method, path[len("/v1/models/"):])
        if (method, path) == ("POST", "/v1/audio/transcriptions"):
            return self._transcribe(request)
        if (method, path) == ("POST", "/v1/audio/speech"):
            return self._speak(request.json if isinstance(request.json, dict) else {})
        raise HttpError(404, {"detail": "Not Found"})

    def _authorise(self, request: Request) -> None:
        key = self.settings.api_key
        if key is None:
            return
        token = request.bearer_token()
        if token is None:
            raise HttpError(403, {"detail": "API key required. Please provide an API key using the "
                                            "Authorization header with Bearer scheme."})
        if token != key:
            raise HttpError(403, {"detail": "Invalid API key. The provided API key is incorrect."})

    @staticmethod
    def _model(model_id: str) -> dict[str, Any]:
        return {
            "id": model_id,
            "created": 0,
            "object": "model",
            "owned_by": model_id.split("/")[0],
            "language": ["en"],
            "task": model_task(model_id) or ASR_TASK,
        }

    def _model_route(self, method: str, model_id: str) -> Reply:
        if method == "GET":
            if not self.cache.has(model_id):
                raise _not_found(model_id)
            return json_reply(self._model(model_id))
        if method == "POST":
            if model_task(model_id) is None:
                raise _not_found(model_id)
            if self.cache.has(model_id):
                return text_reply(f"Model '{model_id}' already exists", 201)
            self.cache.download(model_id)
            return text_reply(f"Model '{model_id}' downloaded", 200)
        if method == "DELETE":
            if not self.cache.delete(model_id):
                raise HttpError(404, {"detail": f"Model '{model_id}' not found"})
            return json_reply({"detail": f"Model '{model_id}' deleted"})
        raise HttpError(405, {"detail": "Method Not Allowed"})

    def _require_local(self, model_id: str, task: str) -> None:
        if not self.cache.has(model_id):
            raise HttpError(404, {"detail": f"Model '{model_id}' is not installed locally. "
                                            "You can download the model using `POST /v1/models`"})
        if model_task(model_id) != task:
            raise HttpError(404, {"detail": f"Model '{model_id}' is not supported. "
                                            "If you think this is a mistake, please open an issue."})

    def _transcribe(self, request: Request) -> Reply:
        missing = [f for f in ("file", "model") if f not in request.form]
        if missing:
            raise HttpError(422, {"detail": [
                {"type": "missing", "loc": ["body", f], "msg": "Field required"} for f in missing
            ]})
        model = request.form_value("model") or ""
        response_format = request.form_value("response_format") or "json"
        if response_format not in TRANSCRIPTION_FORMATS:
            raise HttpError(422, {"detail": [{"type": "literal_error", "loc": ["body", "response_format"],
                                              "msg": f"Input should be one of {TRANSCRIPTION_FORMATS}"}]})
        audio = request.form["file"][0].data
        if not audio:
            raise HttpError(400, {"detail": "Failed to decode audio. The provided file is likely empty."})
        self._require_local(model, ASR_TASK)
        seconds = wav_duration(audio)
        text = f"stand-in transcription of {seconds:.2f} s of audio" if seconds is not None else "stand-in transcription"
        if response_format == "text":
            return text_reply(text)
        if response_format in ("srt", "vtt"):
            cue = "00:00:00,000 --> 00:00:01,000" if response_format == "srt" else "00:00:00.000 --> 00:00:01.000"
            header = "" if response_format == "srt" else "WEBVTT\n\n"
            return text_reply(f"{header}1\n{cue}\n{text}\n\n")
        if response_format == "verbose_json":
            return json_reply({"task": "transcribe", "language": request.form_value("language") or "en",
                               "duration": seconds or 0.0, "text": text, "segments": [], "words": None})
        return json_reply({"text": text})

    def _speak(self, body: dict[str, Any]) -> Reply:
        missing = [f for f in ("model", "input", "voice") if not isinstance(body.get(f), str)]
        if missing:
            raise HttpError(422, {"detail": [
                {"type": "missing", "loc": ["body", f], "msg": "Field required"} for f in missing
            ]})
        response_format = body.get("response_format") or "mp3"
        if response_format not in SPEECH_MIME_TYPES:
            raise HttpError(422, {"detail": [{"type": "literal_error", "loc": ["body", "response_format"],
                                              "msg": f"Input should be one of {tuple(SPEECH_MIME_TYPES)}"}]})
        self._require_local(body["model"], TTS_TASK)
        sample_rate = int(body.get("sample_rate") or SPEECH_SAMPLE_RATE)
        seconds = min(2.0, 0.05 * max(1, len(body["input"].split())))
        pcm = sine_pcm(seconds, sample_rate)
        # Only wav and pcm are encoded for real; other formats get WAV bytes under their MIME type.
        audio = pcm if response_format == "pcm" else wave_bytes(pcm, sample_rate)
        return Reply(200, audio, SPEECH_MIME_TYPES[response_format])


def main(argv: Sequence[str] | None = None) -> int:
    """Read the settings, fetch PRELOAD_MODELS, then serve."""
    env = dict(os.environ)
    settings = parse_settings(sys.argv[1:] if argv is None else argv, env)
    cache = HubCache(hub_cache(env))
    for model_id in settings.preload_models:
        if model_task(model_id) is None:
            sys.stderr.write(f"ValueError: Model '{model_id}' not found\n")
            return 1
        if not cache.has(model_id):
            cache.download(model_id)
    serve(SpeachesApp(settings, cache), settings.host, settings.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
