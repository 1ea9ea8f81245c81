"""OpenAI-style response bodies the stand-ins build: chat completions, tool calls, errors."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Iterator


def error_body(message: str, kind: str, code: int, param: str | None = None) -> dict[str, Any]:
    """The OpenAI error envelope vLLM uses."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def last_user_text(messages: list[dict[str, Any]]) -> str:
    """The text of the last user message (string or list-of-parts content)."""
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def tool_call(function_name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """One OpenAI tool call entry."""
    return {
        "id": f"chatcmpl-tool-{uuid.uuid4().hex[:16]}",
        "type": "function",
        "function": {"name": function_name, "arguments": json.dumps(arguments)},
    }


def placeholder_arguments(tool: dict[str, Any]) -> dict[str, Any]:
    """Arguments for a tool: each required parameter filled with a value of its type."""
    parameters = tool.get("function", {}).get("parameters") or {}
    samples = {"string": "example", "integer": 1, "number": 1.0, "boolean": True, "array": [], "object": {}}
    properties = parameters.get("properties") or {}
    return {
        name: samples.get(str(properties.get(name, {}).get("type")), "example")
        for name in parameters.get("required") or []
    }


def chat_completion(
    model: str, message: dict[str, Any], finish_reason: str, prompt_tokens: int
) -> dict[str, Any]:
    """A non-streamed chat completion."""
    completion_tokens = max(1, len(str(message.get("content") or "").split()))
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def chat_chunks(model: str, message: dict[str, Any], finish_reason: str) -> Iterator[bytes]:
    """The same completion as server-sent events, ending with [DONE]."""
    ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def event(delta: dict[str, Any], finish: str | None) -> bytes:
        chunk = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        return f"data: {json.dumps(chunk)}\n\n".encode()

    yield event({"role": "assistant", "content": ""}, None)
    if message.get("tool_calls"):
        calls = [dict(call, index=i) for i, call in enumerate(message["tool_calls"])]
        yield event({"tool_calls": calls}, None)
    for word in str(message.get("content") or "").split(" "):
        yield event({"content": word + " "}, None)
    yield event({}, finish_reason)
    yield b"data: [DONE]\n\n"
