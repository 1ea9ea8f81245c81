"""`python -m config smoke`: call every route a deployed gateway serves, print a table.

Exit status: 0 all calls passed, 1 a call (or model discovery) failed, 2 usage error."""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TextIO

from components.model_entry import ROUTE_MODES

DEFAULT_TIMEOUT_S = 120.0  # a cold model's first request may have to load it first
DEFAULT_VOICE = "af_heart"  # valid for Kokoro; Piper ignores the voice
PROMPT = "Reply with the single word: ok."
TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_current_time",
        "description": "Get the current time in a time zone.",
        "parameters": {
            "type": "object",
            "properties": {"timezone": {"type": "string", "description": "IANA name, e.g. Europe/Paris"}},
            "required": ["timezone"],
        },
    },
}


class UsageError(Exception):
    """A problem with how the check was invoked (exit 2)."""


class GatewayError(Exception):
    """The gateway could not be asked what it serves (exit 1)."""


@dataclass
class Session:
    """Where and how to call: the gateway, its key, and per-call settings."""

    url: str
    key: str
    timeout: float
    voice: str
    _client: Any = field(default=None, repr=False)

    def openai(self) -> Any:
        """The official client, pointed at the gateway's /v1."""
        if self._client is None:
            from openai import OpenAI

            self._client = OpenAI(
                base_url=f"{self.url}/v1", api_key=self.key, timeout=self.timeout, max_retries=0
            )
        return self._client

    def post(self, path: str, payload: Mapping[str, Any]) -> Any:
        """POST JSON with the master key; returns the decoded reply or raises."""
        import httpx

        response = httpx.post(
            f"{self.url}{path}", json=dict(payload), timeout=self.timeout,
            headers={"Authorization": f"Bearer {self.key}"},
        )
        if response.status_code >= 400:
            raise RuntimeError(f"HTTP {response.status_code}: {_brief(response.text)}")
        return response.json()


def call_chat(session: Session, model: str) -> str:
    """A one-line chat completion."""
    reply = session.openai().chat.completions.create(
        model=model, messages=[{"role": "user", "content": PROMPT}], max_tokens=512
    )
    if not reply.choices:
        raise RuntimeError("no choices in the reply")
    return _brief(reply.choices[0].message.content or f"finish_reason={reply.choices[0].finish_reason}")


def call_tools(session: Session, model: str) -> str:
    """A chat completion that must come back as a tool call (auto tool choice)."""
    reply = session.openai().chat.completions.create(
        model=model, tools=[TOOL], tool_choice="auto", max_tokens=512,
        messages=[{"role": "user", "content": "What time is it in Paris? Use the get_current_time tool."}],
    )
    calls = reply.choices[0].message.tool_calls if reply.choices else None
    if not calls:
        raise RuntimeError("the reply has no tool call")
    return f"{calls[0].function.name}({_brief(calls[0].function.arguments, 40)})"


def call_embedding(session: Session, model: str) -> str:
    """Embed one sentence."""
    reply = session.openai().embeddings.create(model=model, input=["llmstack smoke check"])
    if not reply.data or not reply.data[0].embedding:
        raise RuntimeError("empty embedding")
    return f"{len(reply.data[0].embedding)} dimensions"


def call_rerank(session: Session, model: str) -> str:
    """Rerank two documents (plain HTTP: the openai client has no rerank)."""
    reply = session.post("/rerank", {
        "model": model, "query": "Where is Paris?",
        "documents": ["Paris is the capital of France.", "Bananas are yellow."],
    })
    results = reply.get("results") if isinstance(reply, dict) else None
    if not results:
        raise RuntimeError(f"no results: {_brief(json.dumps(reply))}")
    return f"top document {results[0].get('index')}"


def call_transcription(session: Session, model: str) -> str:
    """Transcribe a 1 s tone generated here."""
    reply = session.openai().audio.transcriptions.create(
        model=model, file=("smoke.wav", sine_wav(1.0), "audio/wav")
    )
    text = getattr(reply, "text", None)
    if not isinstance(text, str):
        raise RuntimeError("the reply has no text")
    return _brief(repr(text))


def call_speech(session: Session, model: str) -> str:
    """Synthesise a short sentence as WAV."""
    reply = session.openai().audio.speech.create(
        model=model, voice=session.voice, input="Smoke check.", response_format="wav"
    )
    if not reply.content:
        raise RuntimeError("empty audio")
    return f"{len(reply.content)} bytes"


@dataclass(frozen=True)
class Route:
    """One row kind of the check: the stack output it reads and the call it makes."""

    kind: str  # key in the `models` stack output; "tools" reads `toolModels`
    path: str
    modes: tuple[str, ...]  # LiteLLM model_info.mode values served by this route
    call: Callable[[Session, str], str]


# The one route table: what a deployed stack serves through its gateway.
ROUTES: tuple[Route, ...] = (
    # LiteLLM also calls a model of mode `completion` a chat model.
    Route("chat", "/v1/chat/completions", (ROUTE_MODES["chat"], "completion"), call_chat),
    Route("tools", "/v1/chat/completions+tools", (), call_tools),
    Route("embedding", "/v1/embeddings", (ROUTE_MODES["embedding"],), call_embedding),
    Route("rerank", "/rerank", (ROUTE_MODES["rerank"],), call_rerank),
    Route("transcription", "/v1/audio/transcriptions", (ROUTE_MODES["transcription"],), call_transcription),
    Route("speech", "/v1/audio/speech", (ROUTE_MODES["speech"],), call_speech),
)
MODEL_KINDS = tuple(r.kind for r in ROUTES if r.kind != "tools")


@dataclass(frozen=True)
class Result:
    """The outcome of one call."""

    route: str
    model: str
    ok: bool
    detail: str
    latency_ms: float


def sine_wav(seconds: float, sample_rate: int = 16000, frequency: float = 440.0) -> bytes:
    """A mono 16-bit WAV tone."""
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * frequency * i / sample_rate)))
        for i in range(int(seconds * sample_rate))
    )
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(frames)
    return buffer.getvalue()


def _brief(text: str, limit: int = 100) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_error(error: BaseException) -> str:
    """A one-line reason for a failed call, without a traceback."""
    status = getattr(error, "status_code", None)
    if status is not None:
        return f"HTTP {status}: {_brief(getattr(error, 'message', '') or str(error), 160)}"
    name = type(error).__name__
    if "Timeout" in name:
        return "timed out"
    if "Connection" in name:
        return f"cannot connect: {_brief(str(error.__cause__ or error))}"
    return _brief(f"{str(error) or name}", 160)


def run_checks(session: Session, models: Mapping[str, Sequence[str]]) -> list[Result]:
    """Call every route for every model listed under its kind."""
    results = []
    for route in ROUTES:
        for model in models.get(route.kind, ()):
            start = time.perf_counter()
            try:
                detail, ok = route.call(session, model), True
            except Exception as error:  # any failure is a row in the table, never a traceback
                detail, ok = describe_error(error), False
            results.append(Result(route.path, model, ok, detail, (time.perf_counter() - start) * 1000))
    return results


def render_table(results: Sequence[Result]) -> str:
    """The results as aligned columns: route, model, status, latency ms, detail."""
    rows = [("ROUTE", "MODEL", "STATUS", "LATENCY MS", "DETAIL")] + [
        (r.route, r.model, "ok" if r.ok else "FAIL", f"{r.latency_ms:.0f}", r.detail) for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2].ljust(widths[2]),
                 row[3].rjust(widths[3]), row[4]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def normalise_models(raw: Any, tool_models: Any, source: str) -> dict[str, list[str]]:
    """Check the {kind: [names]} + toolModels structure; returns it keyed by route kind."""
    if not isinstance(raw, dict):
        raise UsageError(f"{source}: `models` must be an object like {{\"chat\": [\"qwen3\"]}}")
    unknown = sorted(set(raw) - set(MODEL_KINDS))
    if unknown:
        raise UsageError(f"{source}: unknown model kinds {unknown}; expected some of {list(MODEL_KINDS)}")
    models: dict[str, list[str]] = {}
    for kind, names in list(raw.items()) + [("tools", tool_models or [])]:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            label = "toolModels" if kind == "tools" else f"models.{kind}"
            raise UsageError(f"{source}: `{label}` must be a list of model names")
        models[kind] = list(dict.fromkeys(names))
    return models


def parse_models_json(value: str) -> dict[str, list[str]]:
    """--models-json: inline JSON or a file path; {"models": {...}, "toolModels": [...]} or the bare models object."""
    text = value
    if not value.lstrip().startswith("{"):
        try:
            text = Path(value).read_text()
        except OSError as error:
            raise UsageError(f"--models-json: cannot read {value}: {error.strerror}") from None
    try:
        parsed = json.loads(text)
    except ValueError as error:
        raise UsageError(f"--models-json: invalid JSON: {error}") from None
    if isinstance(parsed, dict) and "models" in parsed:
        return normalise_models(parsed["models"], parsed.get("toolModels"), "--models-json")
    return normalise_models(parsed, None, "--models-json")


def stack_outputs(stack: str | None) -> dict[str, Any]:
    """`pulumi stack output --json --show-secrets [--stack NAME]`."""
    pulumi = shutil.which("pulumi")
    if pulumi is None:
        raise UsageError(
            "no gateway given: pass --url and --key (or run where the pulumi CLI is on PATH "
            "to read the stack outputs gatewayUrl and masterKey)"
        )
    command = [pulumi, "stack", "output", "--json", "--show-secrets"] + (["--stack", stack] if stack else [])
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise UsageError(f"`{' '.join(command[1:])}` failed: {error}") from None
    if done.returncode != 0:
        raise UsageError(f"`pulumi {' '.join(command[1:])}` failed: {_brief(done.stderr or done.stdout, 300)}")
    try:
        outputs = json.loads(done.stdout or "{}")
    except ValueError:
        raise UsageError("pulumi stack output did not print JSON") from None
    if not isinstance(outputs, dict):
        raise UsageError("pulumi stack output did not print a JSON object")
    return outputs


def discover_models(session: Session) -> dict[str, list[str]]:
    """Ask the gateway (GET /model/info) which models it serves, by mode and tool support."""
    import httpx

    try:
        response = httpx.get(
            f"{session.url}/model/info", timeout=session.timeout,
            headers={"Authorization": f"Bearer {session.key}"},
        )
    except httpx.HTTPError as error:
        raise GatewayError(f"cannot reach the gateway at {session.url}: {describe_error(error)}") from None
    if response.status_code in (401, 403) or "no_db_connection" in response.text:
        # Without a database LiteLLM answers 400 "No connected db." to any key but the master key.
        raise GatewayError(
            f"the gateway at {session.url} rejected the key (HTTP {response.status_code}): is it the master key?"
        )
    if response.status_code != 200:
        raise GatewayError(f"GET {session.url}/model/info answered {response.status_code}: {_brief(response.text)}")
    try:
        entries = response.json().get("data", [])
    except (ValueError, AttributeError):
        raise GatewayError(f"GET {session.url}/model/info did not return a model list") from None
    by_mode = {mode: route.kind for route in ROUTES for mode in route.modes}
    models: dict[str, list[str]] = {kind: [] for kind in MODEL_KINDS + ("tools",)}
    for entry in entries:
        name = entry.get("model_name")
        info = entry.get("model_info") or {}
        kind = by_mode.get(info.get("mode") or "chat")
        if not isinstance(name, str) or kind is None:
            continue
        if name not in models[kind]:
            models[kind].append(name)
        if kind == "chat" and info.get("supports_function_calling") and name not in models["tools"]:
            models["tools"].append(name)
    return models


def build_parser() -> argparse.ArgumentParser:
    """The smoke command's flags."""
    parser = argparse.ArgumentParser(
        prog="python -m config smoke",
        description="Call every route of a deployed llmstack gateway and print a table. Without "
        "--url/--key, reads the stack outputs with the pulumi CLI.",
    )
    parser.add_argument("--url", help="gateway URL, e.g. http://localhost:4000 (stack output gatewayUrl)")
    parser.add_argument("--key", help="master key (default: $LITELLM_MASTER_KEY, else stack output masterKey)")
    parser.add_argument("--stack", help="Pulumi stack whose outputs to read")
    parser.add_argument("--models-json", metavar="JSON_OR_FILE",
                        help='models to call: {"models": {"chat": [...], ...}, "toolModels": [...]}')
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per call (default %(default)s)")
    parser.add_argument("--voice", default=DEFAULT_VOICE, help="voice for speech models (default %(default)s)")
    return parser


def plan(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[Session, dict[str, list[str]] | None]:
    """Resolve the gateway, key and model lists from flags, env and stack outputs."""
    if args.timeout <= 0:
        raise UsageError("--timeout must be a positive number of seconds")
    url, key = args.url, args.key or env.get("LITELLM_MASTER_KEY")
    models = parse_models_json(args.models_json) if args.models_json else None
    if not (url and key) or args.stack:
        outputs = stack_outputs(args.stack)
        url = url or outputs.get("gatewayUrl")
        key = key or outputs.get("masterKey")
        if models is None and outputs.get("models") is not None:
            models = normalise_models(outputs["models"], outputs.get("toolModels"), "stack outputs")
    if not isinstance(url, str) or not url:
        raise UsageError("no gateway URL: pass --url or export the stack output gatewayUrl")
    if not isinstance(key, str) or not key:
        raise UsageError("no master key: pass --key, set LITELLM_MASTER_KEY, or export the stack output masterKey")
    url = url.rstrip("/")
    url = url[: -len("/v1")] if url.endswith("/v1") else url
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"--url must start with http:// or https://, got {url!r}")
    return Session(url=url, key=key, timeout=args.timeout, voice=args.voice), models


def main(argv: list[str], out: TextIO | None = None) -> int:
    """Run the check; returns the exit status (0 ok, 1 a call failed, 2 usage error)."""
    out = out or sys.stdout
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # argparse already printed usage or help
        return int(exit_.code or 0)
    missing = [name for name in ("openai", "httpx") if importlib.util.find_spec(name) is None]
    if missing:
        print(f"smoke: {', '.join(missing)} not installed: pip install 'llmstack[smoke]'", file=sys.stderr)
        return 2
    try:
        session, models = plan(args, os.environ)
        if models is None:
            models = discover_models(session)
    except UsageError as error:
        print(f"smoke: error: {error}", file=sys.stderr)
        return 2
    except GatewayError as error:
        print(f"smoke: {error}", file=sys.stderr)
        return 1
    if not any(models.values()):
        print(f"smoke: the gateway at {session.url} lists no models to call", file=sys.stderr)
        return 1
    try:
        results = run_checks(session, models)
    except KeyboardInterrupt:
        print("smoke: interrupted", file=sys.stderr)
        return 130
    failed = sum(not r.ok for r in results)
    print(render_table(results), file=out)
    print(f"\nsmoke: {len(results) - failed} of {len(results)} calls ok against {session.url}", file=out)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
