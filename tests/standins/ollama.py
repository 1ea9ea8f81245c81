"""Stand-in for `ollama/ollama` (entrypoint `ollama`): the `serve` server and the CLI client.

`python -m tests.standins.ollama serve` runs the server on OLLAMA_HOST; `list`, `pull TAG`,
`rm TAG...` and `--version` talk to it like the real CLI. Pulled tags persist in a small JSON
file under OLLAMA_MODELS (default ~/.ollama/models). A tag containing "does-not-exist" cannot
be pulled."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator, Sequence

from .openai_shapes import last_user_text, placeholder_arguments
from .server import HttpError, Reply, Request, json_reply, serve, text_reply

VERSION = "0.35.1"
DEFAULT_HOST = "0.0.0.0:11434"  # the image sets OLLAMA_HOST to this
DEFAULT_PORT = 11434
UNKNOWN_MARKER = "does-not-exist"
STORE_FILE = "standin-models.json"


def parse_host(value: str | None) -> tuple[str, int]:
    """Split OLLAMA_HOST (`host`, `host:port`, `:port`, `http://host:port`) like Ollama does."""
    value = (value or DEFAULT_HOST).strip()
    for scheme in ("http://", "https://"):
        if value.startswith(scheme):
            value = value[len(scheme):]
    value = value.split("/", 1)[0]
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = value, ""
    return host.strip("[]") or "0.0.0.0", int(port) if port else DEFAULT_PORT


def canonical_tag(name: str) -> str:
    """`qwen2.5vl` means `qwen2.5vl:latest`."""
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else f"{name}:latest"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".000000000Z"


class ModelStore:
    """The pulled tags, kept in one JSON file so they survive a restart."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / STORE_FILE
        self._lock = threading.Lock()

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            models = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return models if isinstance(models, dict) else {}

    def _write(self, models: dict[str, dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(models, indent=1, sort_keys=True))
        tmp.replace(self.path)

    def all(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return self._read()

    def add(self, tag: str) -> None:
        with self._lock:
            models = self._read()
            digest = hashlib.sha256(tag.encode()).hexdigest()
            models[tag] = {"digest": digest, "size": 4_700_000_000, "modified_at": _now()}
            self._write(models)

    def remove(self, tag: str) -> bool:
        with self._lock:
            models = self._read()
            if models.pop(tag, None) is None:
                return False
            self._write(models)
            return True


def models_dir(env: dict[str, str]) -> Path:
    """OLLAMA_MODELS, else ~/.ollama/models."""
    return Path(env.get("OLLAMA_MODELS") or Path.home() / ".ollama" / "models")


class OllamaApp:
    """Ollama's native API: no auth, models must be pulled before use."""

    name = "ollama"

    def __init__(self, store: ModelStore) -> None:
        self.store = store
        self.loaded: set[str] = set()

    def handle(self, request: Request) -> Reply:
        route = (request.method, request.path)
        body = request.json if isinstance(request.json, dict) else {}
        if route in (("GET", "/"), ("HEAD", "/")):
            return text_reply("Ollama is running")
        if route == ("GET", "/api/version"):
            return json_reply({"version": VERSION})
        if route == ("GET", "/api/tags"):
            return json_reply({"models": [self._entry(t, m) for t, m in sorted(self.store.all().items())]})
        if route == ("GET", "/api/ps"):
            return json_reply({"models": [{"name": t, "model": t} for t in sorted(self.loaded)]})
        if route == ("POST", "/api/pull"):
            return self._pull(body)
        if route == ("DELETE", "/api/delete"):
            return self._delete(body)
        if route == ("POST", "/api/show"):
            return json_reply(self._show(self._present(body)))
        if route == ("POST", "/api/chat"):
            return self._chat(body)
        if route == ("POST", "/api/generate"):
            return self._generate(body)
        raise HttpError(404, "404 page not found", content_type="text/plain")

    @staticmethod
    def _name(body: dict[str, Any]) -> str:
        name = body.get("model") or body.get("name")
        if not isinstance(name, str) or not name:
            raise HttpError(400, {"error": "model is required"})
        return canonical_tag(name)

    def _present(self, body: dict[str, Any]) -> str:
        tag = self._name(body)
        if tag not in self.store.all():
            raise HttpError(404, {"error": f"model '{body.get('model') or body.get('name')}' not found"})
        return tag

    def _entry(self, tag: str, meta: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": tag,
            "model": tag,
            "modified_at": meta["modified_at"],
            "size": meta["size"],
            "digest": meta["digest"],
            "details": self._details(),
        }

    @staticmethod
    def _details() -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": "qwen2",
            "families": ["qwen2"],
            "parameter_size": "7B",
            "quantization_level": "Q4_K_M",
        }

    def _show(self, tag: str) -> dict[str, Any]:
        return {
            "modelfile": f"FROM {tag}\n",
            "parameters": "",
            "template": "{{ .Prompt }}",
            "details": self._details(),
            "model_info": {"general.architecture": "qwen2", "qwen2.context_length": 32768},
            "capabilities": ["completion", "tools", "vision"],
            "modified_at": self.store.all()[tag]["modified_at"],
        }

    def _pull(self, body: dict[str, Any]) -> Reply:
        tag = self._name(body)
        stream = body.get("stream", True) is not False
        if UNKNOWN_MARKER in tag:
            message = "pull model manifest: file does not exist"
            if stream:
                return Reply(200, content_type="application/x-ndjson", chunks=_ndjson(
                    [{"status": "pulling manifest"}, {"error": message}]))
            raise HttpError(500, {"error": message})
        self.store.add(tag)
        if not stream:
            return json_reply({"status": "success"})
        steps = ["pulling manifest", "verifying sha256 digest", "writing manifest", "success"]
        return Reply(200, content_type="application/x-ndjson", chunks=_ndjson([{"status": s} for s in steps]))

    def _delete(self, body: dict[str, Any]) -> Reply:
        tag = self._name(body)
        if not self.store.remove(tag):
            raise HttpError(404, {"error": f"model '{body.get('model') or body.get('name')}' not found"})
        self.loaded.discard(tag)
        return Reply(200, b"", "text/plain")

    def _require_pulled(self, body: dict[str, Any]) -> str:
        tag = self._name(body)
        if tag not in self.store.all():
            name = body.get("model") or body.get("name")
            raise HttpError(404, {"error": f'model "{name}" not found, try pulling it first'})
        self.loaded.add(tag)
        return tag

    def _chat(self, body: dict[str, Any]) -> Reply:
        tag = self._require_pulled(body)
        messages = body.get("messages") or []
        message: dict[str, Any] = {"role": "assistant", "content": ""}
        tools = body.get("tools") or []
        if tools:
            function = tools[0].get("function", {})
            message["tool_calls"] = [
                {"function": {"name": function.get("name", ""), "arguments": placeholder_arguments(tools[0])}}
            ]
        else:
            message["content"] = f"stand-in reply to: {last_user_text(messages)[:200]}"
        return self._respond(body, tag, {"message": message})

    def _generate(self, body: dict[str, Any]) -> Reply:
        tag = self._require_pulled(body)
        return self._respond(body, tag, {"response": f"stand-in reply to: {str(body.get('prompt'))[:200]}"})

    @staticmethod
    def _respond(body: dict[str, Any], tag: str, payload: dict[str, Any]) -> Reply:
        final = {
            "model": body.get("model") or tag,
            "created_at": _now(),
            **payload,
            "done_reason": "stop",
            "done": True,
            "total_duration": 1_000_000,
            "load_duration": 100_000,
            "prompt_eval_count": 8,
            "prompt_eval_duration": 100_000,
            "eval_count": 6,
            "eval_duration": 500_000,
        }
        if body.get("stream", True) is False:
            return json_reply(final)
        return Reply(200, content_type="application/x-ndjson", chunks=_ndjson([final]))


def _ndjson(items: list[dict[str, Any]]) -> Iterator[bytes]:
    for item in items:
        yield (json.dumps(item) + "\n").encode()


class CliError(Exception):
    """A failure the CLI reports as `Error: ...` with exit status 1."""


def _client_url(env: dict[str, str], path: str) -> str:
    host, port = parse_host(env.get("OLLAMA_HOST"))
    return f"http://{host}:{port}{path}"


def _call(env: dict[str, str], method: str, path: str, body: dict[str, Any] | None = None) -> bytes:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        _client_url(env, path), data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as error:
        raise CliError(_error_text(error.read()) or f"{error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError):
        raise CliError("could not connect to ollama server, run 'ollama serve' to start it") from None


def _error_text(raw: bytes) -> str:
    try:
        return str(json.loads(raw).get("error", ""))
    except (ValueError, AttributeError):
        return raw.decode("utf-8", "replace").strip()


def _human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def cli_list(env: dict[str, str], args: Sequence[str]) -> None:
    """`ollama list`: the pulled models as a table."""
    models = json.loads(_call(env, "GET", "/api/tags")).get("models", [])
    rows = [("NAME", "ID", "SIZE", "MODIFIED")] + [
        (m["name"], m["digest"][:12], _human_size(int(m["size"])), m["modified_at"]) for m in models
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("    ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())


def cli_pull(env: dict[str, str], args: Sequence[str]) -> None:
    """`ollama pull TAG`: streams progress, fails on an `error` line."""
    if len(args) != 1:
        raise CliError(f"accepts 1 arg(s), received {len(args)}")
    raw = _call(env, "POST", "/api/pull", {"model": args[0], "stream": True})
    for line in raw.decode().splitlines():
        event = json.loads(line) if line.strip() else {}
        if "error" in event:
            raise CliError(str(event["error"]))
        if event.get("status"):
            print(event["status"], file=sys.stderr)


def cli_rm(env: dict[str, str], args: Sequence[str]) -> None:
    """`ollama rm TAG...`."""
    if not args:
        raise CliError("requires at least 1 arg(s), only received 0")
    for tag in args:
        _call(env, "DELETE", "/api/delete", {"model": tag})
        print(f"deleted '{tag}'")


def cli_ps(env: dict[str, str], args: Sequence[str]) -> None:
    """`ollama ps`: the loaded models."""
    print("NAME")
    for model in json.loads(_call(env, "GET", "/api/ps")).get("models", []):
        print(model["name"])


def cli_version(env: dict[str, str], args: Sequence[str]) -> None:
    """`ollama --version`: works without a server, like the real one (with a warning)."""
    try:
        version = json.loads(_call(env, "GET", "/api/version"))["version"]
        print(f"ollama version is {version}")
    except CliError:
        print("Warning: could not connect to a running Ollama instance")
        print(f"Warning: client version is {VERSION}")


COMMANDS = {
    "list": cli_list, "ls": cli_list, "pull": cli_pull, "rm": cli_rm, "ps": cli_ps,
    "--version": cli_version, "-v": cli_version,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch a subcommand like the `ollama` binary."""
    args = list(sys.argv[1:] if argv is None else argv)
    env = dict(os.environ)
    if not args:
        print("Usage:\n  ollama [flags]\n  ollama [command]", file=sys.stderr)
        return 0
    command, rest = args[0], args[1:]
    if command == "serve":
        if rest:
            print(f"Error: accepts 0 arg(s), received {len(rest)}", file=sys.stderr)
            return 1
        host, port = parse_host(env.get("OLLAMA_HOST"))
        serve(OllamaApp(ModelStore(models_dir(env))), host, port)
        return 0
    if command not in COMMANDS:
        print(f'Error: unknown command "{command}" for "ollama"', file=sys.stderr)
        return 1
    try:
        COMMANDS[command](env, rest)
    except CliError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
