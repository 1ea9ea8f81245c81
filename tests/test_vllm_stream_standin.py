"""The streaming vLLM stand-in of the benchmarks speaks vLLM's streamed chat completions: one token event per HTTP chunk,
the usage chunk when asked for, the key checked, and `vllm serve`'s command line parsed like the vLLM stand-in's."""

import json
import subprocess

import httpx
import pytest

from tests.standins.launcher import base_env, free_port, standin_argv, start_standin, stop
from tests.standins.vllm_stream import CHUNKS_ENV, INTERVAL_ENV

KEY = "stream-test-key-0123456789"


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    port = free_port()
    process = start_standin(
        "vllm_stream",
        ["Qwen/Qwen3-30B-A3B-FP8", "--served-model-name", "qwen3", "--host", "127.0.0.1", "--port", str(port)],
        {"VLLM_API_KEY": KEY, CHUNKS_ENV: "5", INTERVAL_ENV: "1"},
        f"http://127.0.0.1:{port}/health",
        tmp_path_factory.mktemp("vllm-stream") / "standin.log",
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


def events(url: str, body: dict) -> tuple[list[bytes], list[dict | str]]:
    """The raw HTTP chunks and the parsed SSE events of one streamed completion."""
    raw = []
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=10) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        raw = list(reply.iter_raw())
    text = b"".join(raw).decode()
    parsed = []
    for block in text.split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: "):]
            parsed.append(data if data == "[DONE]" else json.loads(data))
    return raw, parsed


def test_streams_one_token_event_per_chunk_and_the_usage_chunk_when_asked(engine):
    body = {"model": "qwen3", "messages": [{"role": "user", "content": "count to five"}], "stream": True,
            "stream_options": {"include_usage": True}}
    _, parsed = events(engine, body)
    assert parsed[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    tokens = [e["choices"][0]["delta"]["content"] for e in parsed[1:-2]]
    assert tokens == ["t0 ", "t1 ", "t2 ", "t3 ", "t4 "]
    assert parsed[-3]["choices"][0]["finish_reason"] == "length"
    assert parsed[-2]["choices"] == [] and parsed[-2]["usage"] == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}
    assert parsed[-1] == "[DONE]"


def test_without_include_usage_no_usage_chunk(engine):
    _, parsed = events(engine, {"model": "qwen3", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    assert parsed[-1] == "[DONE]"
    assert all("usage" not in e for e in parsed[:-1])
    assert len(parsed) == 1 + 5 + 1


def test_key_model_and_routes_are_checked(engine):
    assert httpx.get(f"{engine}/v1/models", timeout=5).status_code == 401
    models = httpx.get(f"{engine}/v1/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=5).json()
    assert [m["id"] for m in models["data"]] == ["qwen3"]
    wrong = httpx.post(f"{engine}/v1/chat/completions", json={"model": "other", "messages": []},
                       headers={"Authorization": f"Bearer {KEY}"}, timeout=5)
    assert wrong.status_code == 404
    plain = httpx.post(f"{engine}/v1/chat/completions", json={"model": "qwen3", "messages": [{"role": "user", "content": "a b"}]},
                       headers={"Authorization": f"Bearer {KEY}"}, timeout=5)
    assert plain.status_code == 200 and plain.json()["usage"]["completion_tokens"] == 5


def test_refuses_what_vllm_serve_refuses():
    done = subprocess.run(standin_argv("vllm_stream", ["Qwen/Qwen3-0.6B", "--swap-space", "4"]), env=base_env(),
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "--swap-space" in done.stderr
