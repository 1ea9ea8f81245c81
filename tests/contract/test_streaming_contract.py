"""The prod gateway as the program renders it (config, envs with the streaming defaults, `--num_workers`), the real
LiteLLM 1.108.7, in front of a vLLM stand-in that streams token by token: what the stack needs from a stream is kept.

- a client asking for usage gets it in the final chunk, with the engine's counts, after every token in order;
- a client not asking gets no usage chunk, and the gateway still counts the stream's tokens in its Prometheus
  metrics (the prometheus callback is on in prod), per model;
- LiteLLM itself applies the streaming defaults: its proxy module sets the GC thresholds from the rendered env.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from components import litellm as litellm_component
from components import litellm_metrics
from tests.contract import harness
from tests.standins.gateway import start_gateway, stop_gateway
from tests.standins.launcher import base_env, free_port, http_get
from tests.standins.vllm_stream import CHUNKS_ENV, INTERVAL_ENV

pytestmark = pytest.mark.contract

MODEL = "qwen3"
CHUNKS = 20


@pytest.fixture(scope="module")
def streaming(tmp_path_factory: pytest.TempPathFactory, litellm_installed: str) -> Iterator[tuple[harness.Deployment, int]]:
    rendered = harness.render(harness.stack_file("prod"), "prod")
    workdir: Path = tmp_path_factory.mktemp("streaming-contract")
    with harness.deploy(rendered, workdir, redis=harness.redis_available(), with_gateway=False,
                        standins={"vllm": "vllm_stream"}, standin_env={CHUNKS_ENV: str(CHUNKS), INTERVAL_ENV: "2"}) as deployment:
        config = workdir / "config.yaml"
        config.write_text(rendered.config_text)  # unchanged
        env = harness.gateway_env(rendered)
        metrics_port = free_port()
        # The container's port and /tmp path are not ours to take here: the same settings, on a free port and in this test's directory.
        env[litellm_metrics.METRICS_PORT_ENV] = str(metrics_port)
        env[litellm_metrics.MULTIPROC_DIR_ENV] = str(workdir / "multiproc")
        command = list(rendered.gateway_command)
        workers = command[command.index("--num_workers"):][:2] if "--num_workers" in command else []
        deployment.url, deployment.gateway = start_gateway(
            config, env, hosts=deployment.hosts, workdir=workdir / "gateway", timeout=harness.GATEWAY_START_TIMEOUT, extra_args=workers
        )
        try:
            yield deployment, metrics_port
        finally:
            stop_gateway(deployment.gateway)
            deployment.gateway = None


def stream(deployment: harness.Deployment, **extra: object) -> list[dict]:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "count to twenty"}], "stream": True, **extra}
    chunks = []
    with httpx.stream("POST", f"{deployment.url}/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {deployment.master_key}"}, timeout=60) as reply:
        assert reply.status_code == 200, reply.read()
        for line in reply.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunks.append(json.loads(line[len("data: "):]))
    return chunks


def tokens(chunks: list[dict]) -> list[str]:
    return [c["choices"][0]["delta"]["content"] for c in chunks if c.get("choices") and c["choices"][0]["delta"].get("content")]


def output_tokens(metrics_port: int) -> float:
    status, body = http_get(f"http://127.0.0.1:{metrics_port}{litellm_metrics.METRICS_PATH}")
    assert status == 200
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith("litellm_output_tokens_metric_total{") and f'model="{MODEL}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_usage_arrives_in_the_final_chunk_after_every_token(streaming: tuple[harness.Deployment, int]) -> None:
    deployment, _ = streaming
    chunks = stream(deployment, stream_options={"include_usage": True})
    assert tokens(chunks) == [f"t{i} " for i in range(CHUNKS)]
    assert chunks[-1]["usage"]["completion_tokens"] == CHUNKS
    assert chunks[-1]["usage"]["prompt_tokens"] == 3
    assert chunks[-1]["usage"]["total_tokens"] == CHUNKS + 3


def test_streamed_tokens_are_counted_in_the_gateway_metrics(streaming: tuple[harness.Deployment, int]) -> None:
    deployment, metrics_port = streaming
    before = output_tokens(metrics_port)
    chunks = stream(deployment)
    assert tokens(chunks) == [f"t{i} " for i in range(CHUNKS)]
    assert not any(c.get("usage") for c in chunks), "usage the client did not ask for reached it"
    # Success logging runs after the stream ends, in whichever worker served it: poll briefly.
    deadline = time.monotonic() + 20
    while output_tokens(metrics_port) < before + CHUNKS and time.monotonic() < deadline:
        time.sleep(0.2)
    assert output_tokens(metrics_port) == before + CHUNKS


def test_litellm_applies_the_rendered_streaming_envs(litellm_installed: str) -> None:
    rendered = harness.render(harness.stack_file("prod"), "prod")
    env = harness.gateway_env(rendered)
    for name, value in litellm_component.STREAMING_ENVS.items():
        assert env[name] == value
    # LiteLLM's proxy module reads PYTHON_GC_THRESHOLD when it is imported, in each worker.
    probe = "import gc, litellm.proxy.proxy_server; print(list(gc.get_threshold()))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=180,
                          env=base_env({"LITELLM_LOCAL_MODEL_COST_MAP": "True", **litellm_component.STREAMING_ENVS}), cwd="/")
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [int(x) for x in litellm_component.STREAMING_ENVS["PYTHON_GC_THRESHOLD"].split(",")]
