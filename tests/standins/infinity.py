"""Stand-in for `michaelf34/infinity` (entrypoint `infinity_emb`): `v2` CLI, /embeddings, /rerank.

Run as `python -m tests.standins.infinity v2 --model-id A --model-id B --port 7997`. A model id
containing "rerank" or "cross-encoder" is a reranker (serves /rerank only); any other id is an
embedder (serves /embeddings only). An id containing "does-not-exist" fails the start, as a
missing Hugging Face repo does."""

from __future__ import annotations

import argparse
import base64
import hashlib
import math
import os
import struct
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any, Sequence

from .server import HttpError, Reply, Request, json_reply, serve, text_reply

DEFAULT_PORT = 7997
DEFAULT_MODEL = "michaelfeil/bge-small-en-v1.5"
DEFAULT_MODEL_NAME = "default/not-specified"  # what Infinity's request schema defaults `model` to
EMBEDDING_DIMENSIONS = 32
RERANKER_MARKERS = ("rerank", "cross-encoder")
UNKNOWN_MARKER = "does-not-exist"

# Per-model options may be given once (applies to all) or once per --model-id.
PER_MODEL_OPTIONS = {
    "--served-model-name": str, "--batch-size": int, "--revision": str, "--engine": str,
    "--device": str, "--device-id": str, "--dtype": str, "--embedding-dtype": str,
    "--pooling-method": str,
}
CHOICES = {
    "--engine": ("torch", "ctranslate2", "optimum", "neuron", "debugengine"),
    "--device": ("cpu", "cuda", "mps", "tensorrt", "auto"),
    "--dtype": ("float32", "float16", "bfloat16", "int8", "fp8", "auto"),
    "--embedding-dtype": ("float32", "int8", "uint8", "binary", "ubinary"),
    "--pooling-method": ("mean", "cls", "auto"),
    "--log-level": ("critical", "error", "warning", "info", "debug", "trace"),
}
BOOLEAN_OPTIONS = (
    "--trust-remote-code", "--model-warmup", "--vector-disk-cache", "--lengths-via-tokenize",
    "--compile", "--bettertransformer", "--preload-only", "--permissive-cors",
)


def _env_list(env: dict[str, str], name: str) -> list[str] | None:
    """Infinity's env lists are `;`-separated, e.g. INFINITY_MODEL_ID="a;b;"."""
    value = env.get(name)
    return [item for item in value.split(";") if item] if value else None


def build_parser() -> argparse.ArgumentParser:
    """`infinity_emb v2` options; anything else is rejected (exit 2)."""
    parser = argparse.ArgumentParser(prog="infinity_emb v2", allow_abbrev=False)
    parser.add_argument("--model-id", action="append")
    for option, kind in PER_MODEL_OPTIONS.items():
        parser.add_argument(option, action="append", type=kind, choices=CHOICES.get(option))
    for option in BOOLEAN_OPTIONS:
        parser.add_argument(option, action=argparse.BooleanOptionalAction)
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--url-prefix")
    parser.add_argument("--redirect-slash")
    parser.add_argument("--log-level", choices=CHOICES["--log-level"])
    parser.add_argument("--api-key")
    parser.add_argument("--proxy-root-path")
    return parser


@dataclass(frozen=True)
class InfinityModel:
    """One loaded model: its repo id and the name requests use."""

    model_id: str
    served_name: str
    backend: str = "torch"  # --engine / INFINITY_ENGINE; /models reports it
    batch_size: int = 32  # --batch-size / INFINITY_BATCH_SIZE

    @property
    def capability(self) -> str:
        lowered = self.model_id.lower()
        return "rerank" if any(m in lowered for m in RERANKER_MARKERS) else "embed"


@dataclass(frozen=True)
class InfinitySettings:
    """The parsed command line and env."""

    models: tuple[InfinityModel, ...]
    host: str
    port: int
    api_key: str
    url_prefix: str
    preload_only: bool


def parse_settings(argv: Sequence[str], env: dict[str, str]) -> InfinitySettings:
    """Parse like `infinity_emb`; the first argument must be the `v2` command."""
    if not argv or argv[0] != "v2":
        sys.stderr.write(
            "Error: No command given. Please use infinity with the `v2` command. "
            "Usage: `infinity_emb v2 --model-id BAAI/bge-large-en-v1.5`\n"
        )
        raise SystemExit(2)
    parser = build_parser()
    args = parser.parse_args(list(argv[1:]))
    model_ids = args.model_id or _env_list(env, "INFINITY_MODEL_ID") or [DEFAULT_MODEL]
    names = args.served_model_name or _env_list(env, "INFINITY_SERVED_MODEL_NAME") or [""]
    for option in PER_MODEL_OPTIONS:
        given = getattr(args, option[2:].replace("-", "_")) or []
        if len(given) not in (0, 1, len(model_ids)):
            parser.error(f"{option}: expected length {len(model_ids)} but got {len(given)}")
    if len(names) not in (1, len(model_ids)):
        parser.error(f"--served-model-name: expected length {len(model_ids)} but got {len(names)}")
    names = names * len(model_ids) if len(names) == 1 else names
    engines = args.engine or _env_list(env, "INFINITY_ENGINE") or ["torch"]
    batches = args.batch_size or [int(b) for b in _env_list(env, "INFINITY_BATCH_SIZE") or ["32"]]
    if len(engines) not in (1, len(model_ids)) or len(batches) not in (1, len(model_ids)):
        parser.error(f"--engine/--batch-size: expected length {len(model_ids)}")
    engines = engines * len(model_ids) if len(engines) == 1 else engines
    batches = batches * len(model_ids) if len(batches) == 1 else batches
    models = tuple(InfinityModel(m, n or m, e, b) for m, n, e, b in zip(model_ids, names, engines, batches))
    served = [m.served_name for m in models]
    if len(set(served)) != len(served):
        parser.error(f"served model names must be unique, got {served}")
    prefix = args.url_prefix if args.url_prefix is not None else env.get("INFINITY_URL_PREFIX", "")
    if prefix not in ("", "/") and (not prefix.startswith("/") or prefix.endswith("/")):
        parser.error("--url-prefix: Path must start with '/' and must not end with '/'")
    return InfinitySettings(
        models=models,
        host=args.host or env.get("INFINITY_HOST") or "0.0.0.0",
        port=args.port or int(env.get("INFINITY_PORT") or DEFAULT_PORT),
        api_key=args.api_key if args.api_key is not None else env.get("INFINITY_API_KEY", ""),
        url_prefix=prefix.rstrip("/"),
        preload_only=bool(args.preload_only),
    )


def _vector(text: str) -> list[float]:
    """A deterministic unit vector for a text."""
    digest = hashlib.sha256(text.encode()).digest() * (EMBEDDING_DIMENSIONS // 32 + 1)
    raw = [b - 127.5 for b in digest[:EMBEDDING_DIMENSIONS]]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


def _openai_error(message: str, code: int) -> HttpError:
    return HttpError(code, {"error": {"message": message, "type": None, "param": None, "code": code}})


class InfinityApp:
    """Infinity's REST API: /health open, the rest behind the API key when one is set."""

    name = "infinity"

    def __init__(self, settings: InfinitySettings) -> None:
        self.settings = settings
        self.created = int(time.time())
        self.served: dict[str, int] = {}

    def handle(self, request: Request) -> Reply:
        if request.path == "/health" and request.method == "GET":
            return json_reply({"unix": time.time()})
        if request.path == "/metrics" and request.method == "GET":
            # Like the real server: at the root, outside the url prefix and the key (prometheus-fastapi-instrumentator's names).
            lines = ["# TYPE http_requests_total counter"]
            lines += [f'http_requests_total{{handler="{h}",method="POST",status="2xx"}} {n}' for h, n in sorted(self.served.items())]
            return text_reply("\n".join(lines) + "\n", content_type="text/plain; version=0.0.4; charset=utf-8")
        prefix = self.settings.url_prefix
        route = (request.method, request.path[len(prefix):] if request.path.startswith(prefix) else "")
        handlers = {
            ("GET", "/models"): lambda: self._models(),
            ("POST", "/embeddings"): lambda: self._embeddings(request.json or {}),
            ("POST", "/rerank"): lambda: self._rerank(request.json or {}),
        }
        if route not in handlers:
            raise HttpError(404, {"detail": "Not Found"})
        if self.settings.api_key and request.bearer_token() != self.settings.api_key:
            raise HttpError(401, {"detail": "Unauthorized"})
        reply = handlers[route]()
        self.served[route[1]] = self.served.get(route[1], 0) + 1
        return reply

    def _resolve(self, name: str | None) -> InfinityModel:
        models = self.settings.models
        if name in (None, DEFAULT_MODEL_NAME) and len(models) == 1:
            return models[0]
        for model in models:
            if model.served_name == name:
                return model
        available = [m.served_name for m in models]
        raise _openai_error(
            f"Invalid model: Engine for model name `{name}` not found. Available model names are {available}",
            400,
        )

    def _models(self) -> Reply:
        # As Infinity 0.0.77 answers (seen with infinity-emb from PyPI, tests/engines/).
        return json_reply({
            "data": [
                {
                    "id": m.served_name,
                    "stats": {"queue_fraction": 0.0, "queue_absolute": 0, "results_pending": 0, "batch_size": m.batch_size},
                    "object": "model",
                    "owned_by": "infinity",
                    "created": self.created,
                    "backend": m.backend,
                    "capabilities": [m.capability],
                }
                for m in self.settings.models
            ],
            "object": "list",
        })

    def _embeddings(self, body: dict[str, Any]) -> Reply:
        model = self._resolve(body.get("model"))
        if model.capability != "embed":
            raise _openai_error(
                f"ModelNotDeployedError: model=`{model.served_name}` does not support `embed` for "
                f"modality `text`. Reason: the loaded moded cannot fullyfill `embed`. Options are {{'rerank'}}.",
                400,
            )
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise HttpError(422, {"detail": "input must be a string or a non-empty list of strings"})
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(texts):
            vector = _vector(text)
            embedding: Any = (
                base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode() if as_base64 else vector
            )
            data.append({"object": "embedding", "embedding": embedding, "index": index})
        tokens = sum(len(t) for t in texts)
        return json_reply({
            "object": "list",
            "data": data,
            "model": model.served_name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            "id": f"infinity-{uuid.uuid4()}",
            "created": int(time.time()),
        })

    def _rerank(self, body: dict[str, Any]) -> Reply:
        model = self._resolve(body.get("model"))
        if model.capability != "rerank":
            raise _openai_error(
                f"ModelNotDeployedError: model=`{model.served_name}` does not support `rerank`. "
                f"Reason: the loaded moded cannot fullyfill `rerank`. Options are {{'embed'}}.",
                400,
            )
        query, documents = body.get("query"), body.get("documents")
        if not isinstance(query, str) or not isinstance(documents, list):
            raise HttpError(422, {"detail": "query (string) and documents (list) are required"})
        words = set(query.lower().split())
        scores = [
            (len(words & set(str(doc).lower().split())) + 1) / (len(words) + 2) for doc in documents
        ]
        ranked = sorted(range(len(documents)), key=lambda i: -scores[i])
        top_n = body.get("top_n")
        if isinstance(top_n, int) and top_n > 0:
            ranked = ranked[:top_n]
        results = [
            {
                "relevance_score": scores[i],
                "index": i,
                "document": documents[i] if body.get("return_documents") else None,
            }
            for i in ranked
        ]
        tokens = len(query) + sum(len(str(d)) for d in documents)
        return json_reply({
            "object": "rerank",
            "results": results,
            "model": model.served_name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            "id": f"infinity-{uuid.uuid4()}",
            "created": int(time.time()),
        })


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, "download" the models, then serve."""
    settings = parse_settings(sys.argv[1:] if argv is None else argv, dict(os.environ))
    for model in settings.models:
        if UNKNOWN_MARKER in model.model_id:
            sys.stderr.write(
                f"OSError: {model.model_id} is not a local folder and is not a valid model identifier "
                "listed on 'https://huggingface.co/models'\n"
            )
            return 1
    if settings.preload_only:
        return 0
    serve(InfinityApp(settings), settings.host, settings.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
