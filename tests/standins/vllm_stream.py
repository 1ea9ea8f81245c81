"""A vLLM stand-in for streaming load: `vllm serve`'s command line, chat completions streamed as a real engine does.

Each streamed completion is STANDIN_STREAM_CHUNKS token events (default 200), STANDIN_STREAM_INTERVAL_MS apart
(default 20), each written in its own TCP segment (TCP_NODELAY, one HTTP chunk per event) so a reader gets one
event per read, as from an engine that produces a token at a time. With `stream_options.include_usage` the
stream ends with vLLM's usage chunk (no choices). Served from asyncio (uvloop when installed) so that the
stand-in costs little CPU next to what it measures.

    STANDIN_STREAM_CHUNKS=200 python -m tests.standins.vllm_stream MODEL --served-model-name NAME --port 8000
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
import uuid
from typing import Any, Sequence

from .vllm import VllmSettings, parse_settings

CHUNKS_ENV = "STANDIN_STREAM_CHUNKS"
INTERVAL_ENV = "STANDIN_STREAM_INTERVAL_MS"
DEFAULT_CHUNKS = 200
DEFAULT_INTERVAL_MS = 20.0
MAX_HEADER_BYTES = 65536


def _status_line(status: int) -> bytes:
    reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}.get(status, "Error")
    return f"HTTP/1.1 {status} {reason}\r\n".encode()


def _reply(status: int, payload: Any) -> bytes:
    body = json.dumps(payload).encode()
    head = _status_line(status) + b"content-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body)
    return head + body


def _frame(event: bytes) -> bytes:
    """One SSE event as one HTTP/1.1 chunk."""
    return b"%x\r\n%s\r\n" % (len(event), event)


class StreamingEngine:
    """Serves /health, /v1/models and /v1/chat/completions (streamed or not) behind vLLM's key check."""

    def __init__(self, settings: VllmSettings, chunks: int, interval_s: float) -> None:
        self.settings = settings
        self.chunks = chunks
        self.interval_s = interval_s
        self.created = int(time.time())

    def _authorised(self, headers: dict[str, str]) -> bool:
        if not self.settings.api_keys:
            return True
        scheme, _, token = headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and token.strip() in self.settings.api_keys

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if len(head) > MAX_HEADER_BYTES:
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length") or 0)
                body = await reader.readexactly(length) if length else b""
                await self._serve(method, path.split("?", 1)[0], headers, body, writer)
                if headers.get("connection", "").lower() == "close":
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError):
            return
        finally:
            writer.close()

    async def _serve(self, method: str, path: str, headers: dict[str, str], body: bytes, writer: asyncio.StreamWriter) -> None:
        if path == "/health":
            writer.write(_status_line(200) + b"content-length: 0\r\n\r\n")
            return
        if not path.startswith("/v1/"):
            writer.write(_reply(404, {"detail": "Not Found"}))
            return
        if not self._authorised(headers):
            writer.write(_reply(401, {"error": "Unauthorized"}))
            return
        if path == "/v1/models" and method == "GET":
            data = [{"id": n, "object": "model", "created": self.created, "owned_by": "vllm", "root": self.settings.model,
                     "max_model_len": self.settings.max_model_len} for n in self.settings.served_model_names]
            writer.write(_reply(200, {"object": "list", "data": data}))
            return
        if path != "/v1/chat/completions" or method != "POST":
            writer.write(_reply(404, {"detail": "Not Found"}))
            return
        request = json.loads(body or b"{}")
        if request.get("model") not in self.settings.served_model_names:
            writer.write(_reply(404, {"error": {"message": f"The model `{request.get('model')}` does not exist.",
                                                "type": "NotFoundError", "param": None, "code": 404}}))
            return
        prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in request.get("messages") or [])
        if request.get("stream"):
            include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
            await self._stream(writer, request["model"], prompt_tokens, include_usage)
        else:
            writer.write(_reply(200, self._completion(request["model"], prompt_tokens)))

    def _completion(self, model: str, prompt_tokens: int) -> dict[str, Any]:
        content = " ".join(f"t{i}" for i in range(self.chunks))
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "logprobs": None, "finish_reason": "length"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": self.chunks, "total_tokens": prompt_tokens + self.chunks},
        }

    async def _stream(self, writer: asyncio.StreamWriter, model: str, prompt_tokens: int, include_usage: bool) -> None:
        ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        prefix = f'{{"id":"{ident}","object":"chat.completion.chunk","created":{created},"model":{json.dumps(model)},"choices":'

        def event(choices: str, tail: str = "") -> bytes:
            return f"data: {prefix}{choices}{tail}}}\n\n".encode()

        writer.write(_status_line(200) + b"content-type: text/event-stream; charset=utf-8\r\ntransfer-encoding: chunked\r\n\r\n")
        # vLLM's first event carries the role; then one event per token; the last token carries the finish reason.
        writer.write(_frame(event('[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]')))
        await writer.drain()
        for index in range(self.chunks):
            await asyncio.sleep(self.interval_s)
            finish = '"length"' if index == self.chunks - 1 else "null"
            writer.write(_frame(event(f'[{{"index":0,"delta":{{"content":"t{index} "}},"logprobs":null,"finish_reason":{finish}}}]')))
            await writer.drain()
        if include_usage:
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": self.chunks, "total_tokens": prompt_tokens + self.chunks}
            writer.write(_frame(event("[]", f',"usage":{json.dumps(usage)}')))
        writer.write(_frame(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await writer.drain()


async def _serve_forever(engine: StreamingEngine) -> None:
    server = await asyncio.start_server(engine.handle, engine.settings.host, engine.settings.port, backlog=1024)
    sys.stderr.write(f"[vllm-stream] listening on {engine.settings.host}:{engine.settings.port}, {engine.chunks} chunks "
                     f"{engine.interval_s * 1000:g} ms apart\n")
    sys.stderr.flush()
    async with server:
        await server.serve_forever()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `vllm serve`'s command line, then stream until terminated."""
    env = dict(os.environ)
    settings = parse_settings(sys.argv[1:] if argv is None else argv, env)
    engine = StreamingEngine(settings, int(env.get(CHUNKS_ENV, DEFAULT_CHUNKS)), float(env.get(INTERVAL_ENV, DEFAULT_INTERVAL_MS)) / 1000)
    try:
        import uvloop  # comes with litellm[proxy]

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        runner(_serve_forever(engine))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
