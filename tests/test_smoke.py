"""The smoke check (config/smoke.py) against the real LiteLLM proxy in front of the stand-ins.

The proxy's config names backends by container host names, resolved to loopback addresses by
tests/standins/gateway.py; the stand-ins' request logs show what LiteLLM 1.108.7 sent."""

from __future__ import annotations

import json
import os
import secrets
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import yaml

from config import smoke
from tests.standins.gateway import start_gateway, stop_gateway
from tests.standins.launcher import (
    base_env,
    clear_requests,
    free_port,
    recorded_requests,
    standin_argv,
    start_standin,
    stop,
)

HOSTS = {"qwen3": "127.0.0.2", "ollama": "127.0.0.3", "infinity": "127.0.0.4", "speaches": "127.0.0.5"}
OLLAMA_TAG = "qwen2.5vl:7b-q4_K_M"
EMBEDDER, RERANKER = "nomic-ai/nomic-embed-text-v1.5", "BAAI/bge-reranker-v2-m3"
WHISPER, PIPER = "Systran/faster-whisper-small", "speaches-ai/piper-fr_FR-siwis-medium"
MODELS = {
    "chat": ["qwen3", "qwen2.5-vl"],
    "embedding": ["nomic"],
    "rerank": ["bge-reranker"],
    "transcription": ["whisper"],
    "speech": ["piper"],
}


@dataclass(frozen=True)
class Deployment:
    """The gateway and the stand-ins behind it."""

    url: str
    master_key: str
    keys: dict[str, str]  # engine -> its API key
    backends: dict[str, str]  # engine -> base URL on its loopback address


def litellm_config(ports: dict[str, int]) -> dict[str, Any]:
    """A config shaped like the one the program renders, naming backends by host name."""

    def entry(name: str, model: str, api_base: str, mode: str, key_env: str | None, **info: Any) -> dict[str, Any]:
        params = {"model": model, "api_base": api_base}
        if key_env:
            params["api_key"] = f"os.environ/{key_env}"
        return {"model_name": name, "litellm_params": params, "model_info": {"mode": mode, **info}}

    vllm, ollama = f"http://qwen3:{ports['vllm']}/v1", f"http://ollama:{ports['ollama']}"
    infinity, speaches = f"http://infinity:{ports['infinity']}", f"http://speaches:{ports['speaches']}/v1"
    return {
        "model_list": [
            entry("qwen3", "hosted_vllm/qwen3", vllm, "chat", "VLLM_QWEN3_API_KEY", supports_function_calling=True),
            entry("qwen2.5-vl", f"ollama_chat/{OLLAMA_TAG}", ollama, "chat", None),
            entry("nomic", f"infinity/{EMBEDDER}", infinity, "embedding", "INFINITY_API_KEY"),
            entry("bge-reranker", f"infinity/{RERANKER}", infinity, "rerank", "INFINITY_API_KEY"),
            entry("whisper", f"openai/{WHISPER}", speaches, "audio_transcription", "SPEACHES_API_KEY"),
            entry("piper", f"openai/{PIPER}", speaches, "audio_speech", "SPEACHES_API_KEY"),
        ],
        "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"},
        "litellm_settings": {"num_retries": 0, "request_timeout": 30},
    }


def _prepare_models(backends: dict[str, str], keys: dict[str, str]) -> None:
    """Pull the Ollama tag with the CLI and download the Speaches models, as a deploy does."""
    env = base_env({"OLLAMA_HOST": backends["ollama"].removeprefix("http://")})
    subprocess.run(standin_argv("ollama", ["pull", OLLAMA_TAG]), env=env, check=True, capture_output=True, timeout=30)
    for model in (WHISPER, PIPER):
        reply = httpx.post(f"{backends['speaches']}/v1/models/{model}", headers={"Authorization": f"Bearer {keys['speaches']}"})
        assert reply.status_code in (200, 201), reply.text


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    work = tmp_path_factory.mktemp("smoke")
    keys = {engine: secrets.token_hex(24) for engine in ("vllm", "infinity", "speaches")}
    master_key = "sk-" + secrets.token_hex(24)
    engines = {"vllm": "qwen3", "ollama": "ollama", "infinity": "infinity", "speaches": "speaches"}
    ports = {engine: free_port(HOSTS[host]) for engine, host in engines.items()}
    backends = {engine: f"http://{HOSTS[host]}:{ports[engine]}" for engine, host in engines.items()}
    processes: list[subprocess.Popen[bytes]] = []
    gateway: subprocess.Popen[bytes] | None = None
    try:
        processes.append(start_standin(
            "vllm",
            ["Qwen/Qwen3-0.6B", "--served-model-name", "qwen3", "--host", HOSTS["qwen3"], "--port", str(ports["vllm"]),
             "--reasoning-parser", "qwen3", "--enable-auto-tool-choice", "--tool-call-parser", "hermes"],
            {"VLLM_API_KEY": keys["vllm"]}, f"{backends['vllm']}/health", work / "vllm.log",
        ))
        processes.append(start_standin(
            "ollama", ["serve"],
            {"OLLAMA_HOST": f"{HOSTS['ollama']}:{ports['ollama']}", "OLLAMA_MODELS": str(work / "ollama")},
            f"{backends['ollama']}/", work / "ollama.log",
        ))
        processes.append(start_standin(
            "infinity",
            ["v2", "--model-id", EMBEDDER, "--model-id", RERANKER, "--host", HOSTS["infinity"], "--port", str(ports["infinity"])],
            {"INFINITY_API_KEY": keys["infinity"]}, f"{backends['infinity']}/health", work / "infinity.log",
        ))
        processes.append(start_standin(
            "speaches", [],
            {"UVICORN_HOST": HOSTS["speaches"], "UVICORN_PORT": str(ports["speaches"]), "API_KEY": keys["speaches"],
             "HF_HUB_CACHE": str(work / "hf")},
            f"{backends['speaches']}/health", work / "speaches.log",
            ready_headers={"Authorization": f"Bearer {keys['speaches']}"},
        ))
        _prepare_models(backends, keys)
        config_path = work / "litellm.yaml"
        config_path.write_text(yaml.safe_dump(litellm_config(ports)))
        env = {
            "LITELLM_MASTER_KEY": master_key,
            "VLLM_QWEN3_API_KEY": keys["vllm"],
            "INFINITY_API_KEY": keys["infinity"],
            "SPEACHES_API_KEY": keys["speaches"],
        }
        url, gateway = start_gateway(config_path, env, hosts=HOSTS, workdir=work / "gateway")
        yield Deployment(url, master_key, keys, backends)
    finally:
        if gateway is not None:
            stop_gateway(gateway)
        for process in processes:
            stop(process)


def run_smoke(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = smoke.main(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return code, captured.out, captured.err


def test_every_route_passes_with_models_discovered_from_the_gateway(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_smoke(["--url", deployment.url, "--key", deployment.master_key], capsys)
    assert code == 0, out + err
    rows = {tuple(line.split()[:3]) for line in out.splitlines()[1:] if line.strip() and not line.startswith("smoke:")}
    assert rows == {
        ("/v1/chat/completions", "qwen3", "ok"),
        ("/v1/chat/completions", "qwen2.5-vl", "ok"),
        ("/v1/chat/completions+tools", "qwen3", "ok"),
        ("/v1/embeddings", "nomic", "ok"),
        ("/rerank", "bge-reranker", "ok"),
        ("/v1/audio/transcriptions", "whisper", "ok"),
        ("/v1/audio/speech", "piper", "ok"),
    }
    assert "7 of 7 calls ok" in out


def test_litellm_sends_what_the_engines_expect(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    for backend in deployment.backends.values():
        clear_requests(backend)
    models = json.dumps({"models": MODELS, "toolModels": ["qwen3", "qwen2.5-vl"]})
    code, out, err = run_smoke(["--url", deployment.url, "--key", deployment.master_key, "--models-json", models], capsys)
    assert code == 0, out + err

    vllm = recorded_requests(deployment.backends["vllm"])
    assert [(r["method"], r["path"]) for r in vllm] == [("POST", "/v1/chat/completions")] * 2
    assert all(r["headers"]["authorization"] == f"Bearer {deployment.keys['vllm']}" for r in vllm)
    assert vllm[0]["body"]["model"] == "qwen3" and "tools" not in vllm[0]["body"]
    assert vllm[1]["body"]["tools"][0]["function"]["name"] == smoke.TOOL["function"]["name"]

    ollama = recorded_requests(deployment.backends["ollama"])
    assert [(r["method"], r["path"]) for r in ollama] == [("POST", "/api/chat")] * 2
    assert all("authorization" not in r["headers"] for r in ollama)
    assert {r["body"]["model"] for r in ollama} == {OLLAMA_TAG}
    assert all(r["body"]["stream"] is False for r in ollama)

    infinity = recorded_requests(deployment.backends["infinity"])
    assert [(r["path"], r["body"]["model"]) for r in infinity] == [("/embeddings", EMBEDDER), ("/rerank", RERANKER)]
    assert all(r["headers"]["authorization"] == f"Bearer {deployment.keys['infinity']}" for r in infinity)
    assert set(infinity[1]["body"]) >= {"query", "documents"}

    speaches = recorded_requests(deployment.backends["speaches"])
    transcription, speech = (next(r for r in speaches if r["path"] == p) for p in ("/v1/audio/transcriptions", "/v1/audio/speech"))
    assert transcription["headers"]["content-type"].startswith("multipart/form-data")
    assert transcription["body"]["model"] == WHISPER and transcription["body"]["file"]["size"] > 0
    assert speech["body"]["model"] == PIPER and speech["body"]["response_format"] == "wav"
    assert all(r["headers"]["authorization"] == f"Bearer {deployment.keys['speaches']}" for r in speaches)


def test_a_failing_call_exits_1_and_still_prints_the_table(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    models = json.dumps({"chat": ["qwen3", "no-such-model"]})
    code, out, _ = run_smoke(["--url", deployment.url, "--key", deployment.master_key, "--models-json", models], capsys)
    assert code == 1
    assert any(line.split()[1:3] == ["no-such-model", "FAIL"] for line in out.splitlines() if line.strip())
    assert any(line.split()[1:3] == ["qwen3", "ok"] for line in out.splitlines() if line.strip())


def test_a_wrong_master_key_exits_1_with_a_message(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_smoke(["--url", deployment.url, "--key", "sk-" + secrets.token_hex(8)], capsys)
    assert code == 1
    assert "rejected the key" in err


def test_outputs_come_from_pulumi_when_no_flags_are_given(
    deployment: Deployment, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outputs = {"gatewayUrl": deployment.url, "masterKey": deployment.master_key,
               "models": {"chat": ["qwen3"], "embedding": ["nomic"]}, "toolModels": ["qwen3"]}
    args_file = tmp_path / "pulumi-args"
    fake = tmp_path / "pulumi"
    fake.write_text(f"#!/bin/sh\necho \"$@\" > {args_file}\ncat <<'EOF'\n{json.dumps(outputs)}\nEOF\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("LITELLM_MASTER_KEY", raising=False)
    code, out, err = run_smoke(["--stack", "dev"], capsys)
    assert code == 0, out + err
    assert args_file.read_text().split() == ["stack", "output", "--json", "--show-secrets", "--stack", "dev"]
    assert "3 of 3 calls ok" in out


def test_the_stack_ca_from_the_outputs_is_trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With `tls: internal` the stack output caCertificate is what the smoke check trusts (unless --ca says otherwise)."""
    pem = "-----BEGIN CERTIFICATE-----\nstack ca\n-----END CERTIFICATE-----\n"
    outputs = {"gatewayUrl": "https://gpu-01", "masterKey": "sk-" + "0" * 40, "caCertificate": pem}
    monkeypatch.setattr(smoke, "stack_outputs", lambda stack: outputs)
    args = smoke.build_parser().parse_args(["--stack", "prod", "--models-json", '{"models": {"chat": ["qwen3"]}}'])
    session, _ = smoke.plan(args, {})
    assert session.url == "https://gpu-01" and session.ca_file is not None
    assert Path(session.ca_file).read_text() == pem
    given = tmp_path / "mine.pem"
    given.write_text(pem)
    args = smoke.build_parser().parse_args(["--stack", "prod", "--ca", str(given), "--models-json", '{"models": {"chat": ["qwen3"]}}'])
    assert smoke.plan(args, {})[0].ca_file == str(given)


def test_an_unreachable_gateway_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, _, err = run_smoke(["--url", url, "--key", "sk-" + secrets.token_hex(8), "--timeout", "5"], capsys)
    assert code == 1
    assert "cannot reach the gateway" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "no gateway given: pass --url and --key"),
        (["--url", "http://127.0.0.1:9"], "no gateway given"),
        (["--url", "localhost:4000", "--key", "k"], "must start with http://"),
        (["--url", "http://x", "--key", "k", "--models-json", "{not json"], "invalid JSON"),
        (["--url", "http://x", "--key", "k", "--models-json", '{"chats": ["a"]}'], "unknown model kinds"),
        (["--url", "http://x", "--key", "k", "--timeout", "0"], "--timeout must be"),
        (["--url", "https://x", "--key", "k", "--ca", "/nonexistent/ca.pem"], "--ca '/nonexistent/ca.pem' is not a file"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_usage_errors_exit_2_without_a_traceback(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no pulumi CLI
    monkeypatch.delenv("LITELLM_MASTER_KEY", raising=False)
    code, _, err = run_smoke(argv, capsys)
    assert code == 2
    assert message in err


def test_the_route_table_covers_every_kind_of_stack_output() -> None:
    assert {route.kind for route in smoke.ROUTES} == set(MODELS) | {"tools"}
    assert smoke.parse_models_json(json.dumps(MODELS))["tools"] == []
