"""Stand-in for `vllm/vllm-openai` (entrypoint `vllm serve`): its CLI and OpenAI API under /v1.

Run as `python -m tests.standins.vllm MODEL [--flag value ...]`, the args the image's
`vllm serve` entrypoint gets. Flags vLLM no longer has (or never had) exit 2 like argparse."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Sequence

from .openai_shapes import (
    chat_chunks,
    chat_completion,
    error_body,
    last_user_text,
    placeholder_arguments,
    tool_call,
)
from .server import HttpError, Reply, Request, json_reply, serve, text_reply

DEFAULT_PORT = 8000
VERSION = "0.31.0"

# Removed between 0.10 and 0.18: the stand-in names them in its error so a stale spec is obvious.
REMOVED_FLAGS = ("--enable-reasoning", "--swap-space", "--disable-log-requests", "--rope-scaling")

REASONING_PARSERS = (
    "deepseek_r1", "deepseek_v3", "ernie45", "glm45", "gpt_oss", "granite", "hunyuan_a13b",
    "kimi_k2", "minimax_m2", "minimax_m2_append_think", "mistral", "olmo3", "qwen3", "seed_oss",
    "step3",
)
TOOL_CALL_PARSERS = (
    "deepseek_v3", "deepseek_v31", "ernie45", "glm45", "granite", "granite-20b-fc", "hermes",
    "hunyuan_a13b", "internlm", "jamba", "kimi_k2", "llama3_json", "llama4_json",
    "llama4_pythonic", "longcat", "minimax", "minimax_m2", "mistral", "openai", "phi4_mini_json",
    "pythonic", "qwen3_coder", "qwen3_xml", "seed_oss", "step3", "xlam",
)


def _model_len(value: str) -> int:
    """vLLM accepts plain ints, -1/auto, and k/K/m/M suffixes (k=1000, K=1024)."""
    if value.lower() == "auto":
        return -1
    multipliers = {"k": 1000, "m": 1000**2, "K": 1024, "M": 1024**2}
    try:
        if value[-1:] in multipliers:
            return int(float(value[:-1]) * multipliers[value[-1]])
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid max model length: {value!r}") from None


def _fraction(value: str) -> float:
    number = float(value)
    if not 0 < number <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return number


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return number


def _json_object(value: str) -> dict[str, Any]:
    try:
        parsed = json.loads(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"invalid JSON {value!r}: {error}") from None
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {value!r}")
    return parsed


def build_parser() -> argparse.ArgumentParser:
    """The subset of `vllm serve` flags the stand-in knows; anything else is rejected."""
    parser = argparse.ArgumentParser(prog="vllm serve", allow_abbrev=False)
    add = parser.add_argument
    flag = argparse.BooleanOptionalAction
    add("model_tag", nargs="?", help="model name or path")
    add("--model")
    add("--served-model-name", nargs="+")
    add("--host")
    add("--port", type=int, default=DEFAULT_PORT)
    add("--api-key", nargs="+")
    add("--max-model-len", type=_model_len)
    add("--gpu-memory-utilization", type=_fraction, default=0.92)
    add("--tensor-parallel-size", "-tp", type=_positive_int, default=1)
    add("--pipeline-parallel-size", "-pp", type=_positive_int, default=1)
    add("--data-parallel-size", "-dp", type=_positive_int, default=1)
    add("--reasoning-parser", choices=REASONING_PARSERS)
    add("--enable-auto-tool-choice", action=flag, default=False)
    add("--tool-call-parser")
    add("--hf-overrides", type=_json_object)
    add("--override-generation-config", type=_json_object)
    add("--limit-mm-per-prompt", type=_json_object)
    add("--generation-config")
    add("--chat-template")
    add("--tokenizer")
    add("--revision")
    add("--download-dir")
    add("--dtype", choices=("auto", "half", "float16", "bfloat16", "float", "float32"))
    add("--quantization", "-q")
    add("--kv-cache-dtype")
    add("--max-num-seqs", type=_positive_int)
    add("--max-num-batched-tokens", type=_positive_int)
    add("--seed", type=int)
    add("--cpu-offload-gb", type=float)
    add("--enable-prefix-caching", action=flag)
    add("--enable-chunked-prefill", action=flag)
    add("--trust-remote-code", action=flag)
    add("--enforce-eager", action=flag)
    add("--enable-log-requests", action=flag)
    add("--disable-log-stats", action="store_true")
    add("--uvicorn-log-level", choices=("critical", "error", "warning", "info", "debug", "trace"))
    return parser


@dataclass(frozen=True)
class VllmSettings:
    """The parsed command line and env, as the server uses them."""

    model: str
    served_model_names: tuple[str, ...]
    host: str
    port: int
    api_keys: tuple[str, ...]
    max_model_len: int
    reasoning_parser: str | None
    auto_tool_choice: bool
    tool_call_parser: str | None
    hf_overrides: dict[str, Any]


def _normalise(argv: Sequence[str]) -> list[str]:
    """vLLM's parser accepts `--max_model_len` as `--max-model-len`; so does the stand-in."""
    out = []
    for arg in argv:
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            arg = name.replace("_", "-") + eq + value
        out.append(arg)
    return out


def parse_settings(argv: Sequence[str], env: dict[str, str]) -> VllmSettings:
    """Parse like `vllm serve`; exits 2 (argparse) on anything the real CLI refuses."""
    parser = build_parser()
    args_list = _normalise(argv)
    removed = [a for a in args_list if a.split("=")[0] in REMOVED_FLAGS]
    if removed:
        parser.error(f"unrecognized arguments: {' '.join(removed)} (removed from vLLM)")
    args = parser.parse_args(args_list)
    model = args.model_tag or args.model
    if not model:
        parser.error("the following arguments are required: model_tag")
    if args.enable_auto_tool_choice and not args.tool_call_parser:
        parser.error("--enable-auto-tool-choice requires --tool-call-parser")
    if args.tool_call_parser and args.tool_call_parser not in TOOL_CALL_PARSERS:
        parser.error(
            f"invalid tool call parser: {args.tool_call_parser} (chose from {{ {', '.join(TOOL_CALL_PARSERS)} }})"
        )
    keys = tuple(args.api_key or ([env["VLLM_API_KEY"]] if env.get("VLLM_API_KEY") else []))
    return VllmSettings(
        model=model,
        served_model_names=tuple(args.served_model_name or [model]),
        host=args.host or "0.0.0.0",
        port=args.port,
        api_keys=keys,
        max_model_len=args.max_model_len if args.max_model_len and args.max_model_len > 0 else 32768,
        reasoning_parser=args.reasoning_parser,
        auto_tool_choice=args.enable_auto_tool_choice,
        tool_call_parser=args.tool_call_parser,
        hf_overrides=args.hf_overrides or {},
    )


class VllmApp:
    """vLLM's OpenAI-compatible server: /health open, /v1/* behind the API key."""

    name = "vllm"

    def __init__(self, settings: VllmSettings) -> None:
        self.settings = settings
        self.created = int(time.time())

    def handle(self, request: Request) -> Reply:
        path = request.path
        if path in ("/health", "/ping") and request.method == "GET":
            return Reply(200, b"", "application/json")
        if path == "/version":
            return json_reply({"version": VERSION})
        if path == "/metrics":
            return text_reply("# stand-in: no metrics\n")
        if path == "/invocations" and request.method == "POST":
            # vLLM's SageMaker route runs a chat completion (a `messages` body) and, like /metrics, checks no
            # API key (vllm#58144): why no engine port may be reachable from outside its host.
            return self._chat(request.json or {})
        if path.startswith("/v1"):
            self._authorise(request)
            if path == "/v1/models" and request.method == "GET":
                return json_reply(self._models())
            if path == "/v1/chat/completions" and request.method == "POST":
                return self._chat(request.json or {})
        raise HttpError(404, {"detail": "Not Found"})

    def _authorise(self, request: Request) -> None:
        if self.settings.api_keys and request.bearer_token() not in self.settings.api_keys:
            raise HttpError(401, {"error": "Unauthorized"})

    def _models(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {
                    "id": name,
                    "object": "model",
                    "created": self.created,
                    "owned_by": "vllm",
                    "root": self.settings.model,
                    "parent": None,
                    "max_model_len": self.settings.max_model_len,
                }
                for name in self.settings.served_model_names
            ],
        }

    def _chat(self, body: dict[str, Any]) -> Reply:
        model = body.get("model")
        if model not in self.settings.served_model_names:
            raise HttpError(
                404, error_body(f"The model `{model}` does not exist.", "NotFoundError", 404)
            )
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise HttpError(400, error_body("messages must be a non-empty list", "BadRequestError", 400))
        message, finish = self._answer(body, messages)
        served = self.settings.served_model_names[0]
        if body.get("stream"):
            return Reply(200, content_type="text/event-stream", chunks=chat_chunks(served, message, finish))
        prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in messages)
        return json_reply(chat_completion(served, message, finish, prompt_tokens))

    def _answer(self, body: dict[str, Any], messages: list[dict[str, Any]]) -> tuple[dict[str, Any], str]:
        tools = body.get("tools") or []
        choice = body.get("tool_choice")
        message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": []}
        if self.settings.reasoning_parser:
            message["reasoning_content"] = "The user wants a short answer."
        if tools and choice != "none":
            if choice in (None, "auto") and not self.settings.auto_tool_choice:
                raise HttpError(
                    400,
                    error_body(
                        '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set',
                        "BadRequestError",
                        400,
                    ),
                )
            tool = tools[0]
            if isinstance(choice, dict):
                wanted = choice.get("function", {}).get("name")
                tool = next((t for t in tools if t.get("function", {}).get("name") == wanted), tool)
            name = tool.get("function", {}).get("name", "")
            message["tool_calls"] = [tool_call(name, placeholder_arguments(tool))]
            return message, "tool_calls"
        message["content"] = f"stand-in reply to: {last_user_text(messages)[:200]}"
        return message, "stop"


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, then serve until terminated."""
    settings = parse_settings(sys.argv[1:] if argv is None else argv, dict(os.environ))
    serve(VllmApp(settings), settings.host, settings.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
