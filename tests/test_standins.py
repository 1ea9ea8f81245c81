"""The engine stand-ins: command lines the real images accept or reject, and their HTTP APIs."""

from __future__ import annotations

import http.client
import json
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.standins import infinity, ollama, speaches, vllm
from tests.standins.audio import sine_wav, wav_duration
from tests.standins.gateway import unshare_works, with_hosts
from tests.standins.launcher import base_env, free_port, standin_argv, start_standin, stop
from tests.standins.server import App, StandinServer, base_url, start_in_thread

QWEN3_ARGS = [
    "Qwen/Qwen3-30B-A3B-FP8", "--served-model-name", "qwen3", "--max-model-len", "131072",
    "--gpu-memory-utilization", "0.8", "--tensor-parallel-size", "1", "--reasoning-parser", "qwen3",
    "--enable-auto-tool-choice", "--tool-call-parser", "hermes",
    "--hf-overrides", '{"rope_parameters":{"rope_type":"yarn","factor":4.0,"original_max_position_embeddings":32768}}',
    "--host", "0.0.0.0", "--port", "8000",
]


@pytest.fixture
def serve_app() -> Iterator[Any]:
    """Start apps on 127.0.0.1 in threads; returns a function app -> base URL."""
    servers: list[StandinServer] = []

    def start(app: App) -> str:
        servers.append(start_in_thread(app))
        return base_url(servers[-1])

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# --- vLLM -----------------------------------------------------------------------------------


def test_vllm_accepts_the_production_command_line() -> None:
    settings = vllm.parse_settings(QWEN3_ARGS, {})
    assert settings.served_model_names == ("qwen3",)
    assert settings.reasoning_parser == "qwen3" and settings.auto_tool_choice
    assert settings.hf_overrides["rope_parameters"]["factor"] == 4.0
    assert settings.max_model_len == 131072 and settings.port == 8000


@pytest.mark.parametrize("removed", [["--enable-reasoning"], ["--swap-space", "4"], ["--disable-log-requests"],
                                     ["--rope-scaling", '{"type":"yarn","factor":4.0}'], ["--no-such-flag"]])
def test_vllm_rejects_flags_it_does_not_have(removed: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        vllm.parse_settings(["Qwen/Qwen3-0.6B", *removed], {})
    assert exit_.value.code == 2
    assert removed[0] in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--enable-auto-tool-choice"], "--enable-auto-tool-choice requires --tool-call-parser"),
        (["--tool-call-parser", "nonsense"], "invalid tool call parser"),
        (["--reasoning-parser", "qwen4"], "invalid choice"),
        (["--hf-overrides", "{rope_parameters: yarn}"], "invalid JSON"),
        (["--hf-overrides", "[1, 2]"], "expected a JSON object"),
        (["--gpu-memory-utilization", "1.5"], "must be in (0, 1]"),
        (["--max-model-len", "lots"], "invalid max model length"),
    ],
)
def test_vllm_rejects_invalid_values(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        vllm.parse_settings(["Qwen/Qwen3-0.6B", *args], {})
    assert message in capsys.readouterr().err


def test_vllm_reads_the_key_from_env_and_accepts_underscored_flags() -> None:
    settings = vllm.parse_settings(["m", "--max_model_len=32k", "--served_model_name", "a", "b"], {"VLLM_API_KEY": "k"})
    assert settings.api_keys == ("k",) and settings.max_model_len == 32000
    assert settings.served_model_names == ("a", "b")


def test_vllm_process_exits_2_on_a_removed_flag() -> None:
    done = subprocess.run(standin_argv("vllm", ["Qwen/Qwen3-0.6B", "--swap-space", "4"]),
                          env=base_env(), capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "unrecognized arguments: --swap-space" in done.stderr


def test_vllm_api_requires_the_key_under_v1_only(serve_app: Any) -> None:
    key = secrets.token_hex(16)
    url = serve_app(vllm.VllmApp(vllm.parse_settings(QWEN3_ARGS, {"VLLM_API_KEY": key})))
    assert httpx.get(f"{url}/health").status_code == 200
    assert httpx.get(f"{url}/v1/models").status_code == 401
    assert httpx.get(f"{url}/v1/models", headers=bearer("wrong")).status_code == 401
    models = httpx.get(f"{url}/v1/models", headers=bearer(key)).json()
    assert [m["id"] for m in models["data"]] == ["qwen3"]
    # as in vLLM (vllm#58144): /metrics and the SageMaker route /invocations answer without any key
    assert httpx.get(f"{url}/metrics").status_code == 200
    answer = httpx.post(f"{url}/invocations", json={"model": "qwen3", "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 200 and answer.json()["object"] == "chat.completion"


def test_vllm_chat_answers_tools_and_unknown_models(serve_app: Any) -> None:
    key = secrets.token_hex(16)
    url = serve_app(vllm.VllmApp(vllm.parse_settings(QWEN3_ARGS, {"VLLM_API_KEY": key})))
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}
    messages = [{"role": "user", "content": "hi"}]
    reply = httpx.post(f"{url}/v1/chat/completions", headers=bearer(key),
                       json={"model": "qwen3", "messages": messages, "tools": [tool]}).json()
    call = reply["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "lookup" and json.loads(call["function"]["arguments"]) == {"q": "example"}
    missing = httpx.post(f"{url}/v1/chat/completions", headers=bearer(key), json={"model": "gpt-4", "messages": messages})
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "The model `gpt-4` does not exist."


def test_vllm_refuses_auto_tool_choice_unless_enabled(serve_app: Any) -> None:
    url = serve_app(vllm.VllmApp(vllm.parse_settings(["m", "--served-model-name", "m"], {})))
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    reply = httpx.post(f"{url}/v1/chat/completions",
                       json={"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": [tool]})
    assert reply.status_code == 400
    assert "--enable-auto-tool-choice" in reply.json()["error"]["message"]


def test_vllm_streams_server_sent_events(serve_app: Any) -> None:
    url = serve_app(vllm.VllmApp(vllm.parse_settings(["m"], {})))
    with httpx.stream("POST", f"{url}/v1/chat/completions",
                      json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}) as reply:
        lines = [line for line in reply.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert json.loads(lines[0][len("data: "):])["object"] == "chat.completion.chunk"


# --- Ollama ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [
    (None, ("0.0.0.0", 11434)), ("0.0.0.0:11434", ("0.0.0.0", 11434)), ("127.0.0.3", ("127.0.0.3", 11434)),
    ("http://ollama:1234", ("ollama", 1234)), (":9999", ("0.0.0.0", 9999)),
])
def test_ollama_host_is_parsed_like_ollama(value: str | None, expected: tuple[str, int]) -> None:
    assert ollama.parse_host(value) == expected


@pytest.fixture
def ollama_server(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A running `ollama serve` stand-in process; yields the env its CLI needs."""
    env = {"OLLAMA_HOST": f"127.0.0.1:{free_port()}", "OLLAMA_MODELS": str(tmp_path / "models")}
    process = start_standin("ollama", ["serve"], env, f"http://{env['OLLAMA_HOST']}/", tmp_path / "ollama.log")
    yield env
    stop(process)


def ollama_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(standin_argv("ollama", args), env=base_env(env), capture_output=True, text=True, timeout=30)


def test_ollama_cli_pulls_lists_and_removes(ollama_server: dict[str, str]) -> None:
    assert ollama_cli(ollama_server, "pull", "qwen2.5vl:7b-q4_K_M").returncode == 0
    assert ollama_cli(ollama_server, "pull", "llama3.2").returncode == 0
    listed = ollama_cli(ollama_server, "list")
    assert listed.returncode == 0
    names = [line.split()[0] for line in listed.stdout.splitlines()[1:]]
    assert names == ["llama3.2:latest", "qwen2.5vl:7b-q4_K_M"]
    removed = ollama_cli(ollama_server, "rm", "llama3.2")
    assert removed.returncode == 0 and "deleted 'llama3.2'" in removed.stdout
    again = ollama_cli(ollama_server, "rm", "llama3.2")
    assert again.returncode == 1 and again.stderr.strip() == "Error: model 'llama3.2' not found"


def test_ollama_cli_reports_server_errors(ollama_server: dict[str, str]) -> None:
    pulled = ollama_cli(ollama_server, "pull", "model-that-does-not-exist:1b")
    assert pulled.returncode == 1
    assert pulled.stderr.strip().endswith("Error: pull model manifest: file does not exist")
    assert ollama_cli(ollama_server, "frobnicate").returncode == 1


def test_ollama_list_fails_when_the_server_is_down(tmp_path: Path) -> None:
    listed = ollama_cli({"OLLAMA_HOST": f"127.0.0.1:{free_port()}"}, "list")
    assert listed.returncode == 1
    assert "could not connect to ollama server" in listed.stderr


def test_ollama_models_survive_a_restart(tmp_path: Path) -> None:
    env = {"OLLAMA_HOST": f"127.0.0.1:{free_port()}", "OLLAMA_MODELS": str(tmp_path / "models")}
    for attempt in range(2):
        process = start_standin("ollama", ["serve"], env, f"http://{env['OLLAMA_HOST']}/", tmp_path / "ollama.log")
        try:
            if attempt == 0:
                assert ollama_cli(env, "pull", "qwen3:0.6b").returncode == 0
            else:
                assert "qwen3:0.6b" in ollama_cli(env, "list").stdout
        finally:
            stop(process)


def test_ollama_chat_needs_a_pulled_model(serve_app: Any, tmp_path: Path) -> None:
    url = serve_app(ollama.OllamaApp(ollama.ModelStore(tmp_path)))
    chat = {"model": "qwen3:0.6b", "stream": False, "messages": [{"role": "user", "content": "hi"}]}
    missing = httpx.post(f"{url}/api/chat", json=chat)
    assert missing.status_code == 404
    assert missing.json() == {"error": 'model "qwen3:0.6b" not found, try pulling it first'}
    assert httpx.post(f"{url}/api/pull", json={"model": "qwen3:0.6b", "stream": False}).json() == {"status": "success"}
    reply = httpx.post(f"{url}/api/chat", json=chat).json()
    assert reply["done"] is True and reply["message"]["content"].startswith("stand-in reply")
    failed = httpx.post(f"{url}/api/pull", json={"model": "x-does-not-exist", "stream": False})
    assert failed.status_code == 500 and "file does not exist" in failed.json()["error"]
    assert httpx.get(f"{url}/").text == "Ollama is running"


# --- Infinity -------------------------------------------------------------------------------


def test_infinity_parses_repeated_model_ids_and_env() -> None:
    settings = infinity.parse_settings(["v2", "--model-id", "a/embed", "--model-id", "b/reranker-v2", "--port", "7997"],
                                       {"INFINITY_API_KEY": "k"})
    assert [(m.served_name, m.capability) for m in settings.models] == [("a/embed", "embed"), ("b/reranker-v2", "rerank")]
    assert settings.api_key == "k" and settings.port == 7997
    from_env = infinity.parse_settings(["v2"], {"INFINITY_MODEL_ID": "x/one;y/two;", "INFINITY_PORT": "8001"})
    assert [m.model_id for m in from_env.models] == ["x/one", "y/two"] and from_env.port == 8001


@pytest.mark.parametrize("argv", [
    [], ["--model-id", "a"], ["v2", "--model-name", "a"], ["v2", "--model-id", "a", "--model-id", "b", "--batch-size", "1",
                                                           "--batch-size", "2", "--batch-size", "3"],
    ["v2", "--engine", "tensorflow"],
])
def test_infinity_rejects_what_infinity_emb_rejects(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        infinity.parse_settings(argv, {})
    assert exit_.value.code == 2


def test_infinity_routes_auth_and_capabilities(serve_app: Any) -> None:
    key = secrets.token_hex(16)
    settings = infinity.parse_settings(["v2", "--model-id", "nomic-ai/nomic-embed-text-v1.5",
                                        "--model-id", "BAAI/bge-reranker-v2-m3", "--api-key", key], {})
    url = serve_app(infinity.InfinityApp(settings))
    assert httpx.get(f"{url}/health").status_code == 200
    assert httpx.post(f"{url}/embeddings", json={"model": "nomic-ai/nomic-embed-text-v1.5", "input": ["a"]}).status_code == 401
    embedded = httpx.post(f"{url}/embeddings", headers=bearer(key),
                          json={"model": "nomic-ai/nomic-embed-text-v1.5", "input": ["a", "b"]})
    assert [len(d["embedding"]) for d in embedded.json()["data"]] == [infinity.EMBEDDING_DIMENSIONS] * 2
    wrong_kind = httpx.post(f"{url}/embeddings", headers=bearer(key), json={"model": "BAAI/bge-reranker-v2-m3", "input": "a"})
    assert wrong_kind.status_code == 400 and "ModelNotDeployedError" in wrong_kind.json()["error"]["message"]
    ranked = httpx.post(f"{url}/rerank", headers=bearer(key), json={
        "model": "BAAI/bge-reranker-v2-m3", "query": "paris france", "documents": ["bananas", "paris is in france"]})
    assert ranked.json()["results"][0]["index"] == 1
    assert httpx.post(f"{url}/rerank", headers=bearer(key), json={
        "model": "nomic-ai/nomic-embed-text-v1.5", "query": "q", "documents": ["d"]}).status_code == 400
    assert httpx.post(f"{url}/embeddings", headers=bearer(key), json={"model": "nope", "input": "a"}).status_code == 400
    assert {m["id"] for m in httpx.get(f"{url}/models", headers=bearer(key)).json()["data"]} == {
        "nomic-ai/nomic-embed-text-v1.5", "BAAI/bge-reranker-v2-m3"}


def test_infinity_fails_to_start_on_a_missing_repo() -> None:
    done = subprocess.run(standin_argv("infinity", ["v2", "--model-id", "org/does-not-exist", "--port", str(free_port())]),
                          env=base_env(), capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "not a valid model identifier" in done.stderr


# --- Speaches -------------------------------------------------------------------------------


@pytest.fixture
def speaches_app(tmp_path: Path) -> tuple[speaches.SpeachesApp, str]:
    key = secrets.token_hex(16)
    settings = speaches.parse_settings([], {"API_KEY": key})
    return speaches.SpeachesApp(settings, speaches.HubCache(tmp_path / "hub")), key


def test_speaches_health_needs_the_key_when_one_is_set(serve_app: Any, speaches_app: Any) -> None:
    app, key = speaches_app
    url = serve_app(app)
    assert httpx.get(f"{url}/health").status_code == 403
    assert httpx.get(f"{url}/health", headers=bearer("wrong")).status_code == 403
    assert httpx.get(f"{url}/health", headers=bearer(key)).text == "OK"


def test_speaches_downloads_transcribes_and_speaks(serve_app: Any, speaches_app: Any, tmp_path: Path) -> None:
    app, key = speaches_app
    url, auth = serve_app(app), bearer(key)
    whisper, piper = "Systran/faster-whisper-small", "speaches-ai/piper-fr_FR-siwis-medium"
    form = {"model": whisper}
    files = {"file": ("a.wav", sine_wav(1.0, 16000), "audio/wav")}
    assert httpx.post(f"{url}/v1/audio/transcriptions", headers=auth, data=form, files=files).status_code == 404
    assert httpx.post(f"{url}/v1/models/{whisper}", headers=auth).status_code == 200
    assert httpx.post(f"{url}/v1/models/{whisper}", headers=auth).status_code == 201
    assert httpx.post(f"{url}/v1/models/org/does-not-exist", headers=auth).status_code == 404
    text = httpx.post(f"{url}/v1/audio/transcriptions", headers=auth, data=form, files=files).json()["text"]
    assert "1.00 s" in text
    speech = {"model": piper, "input": "bonjour", "voice": "siwis", "response_format": "wav"}
    assert httpx.post(f"{url}/v1/audio/speech", headers=auth, json=speech).status_code == 404
    assert httpx.post(f"{url}/v1/models/{piper}", headers=auth).status_code == 200
    audio = httpx.post(f"{url}/v1/audio/speech", headers=auth, json=speech)
    assert audio.headers["content-type"] == "audio/wav" and (wav_duration(audio.content) or 0) > 0
    listed = httpx.get(f"{url}/v1/models", headers=auth).json()["data"]
    assert {(m["id"], m["task"]) for m in listed} == {(whisper, speaches.ASR_TASK), (piper, speaches.TTS_TASK)}
    assert speaches.HubCache(tmp_path / "hub").model_ids() == sorted([whisper, piper])  # persisted
    assert httpx.delete(f"{url}/v1/models/{piper}", headers=auth).status_code == 200
    assert httpx.delete(f"{url}/v1/models/{piper}", headers=auth).status_code == 404


@pytest.mark.parametrize("env", [{"LOG_LEVEL": "verbose"}, {"WHISPER__INFERENCE_DEVICE": "gpu"}, {"PRELOAD_MODELS": "x"}])
def test_speaches_rejects_invalid_settings(env: dict[str, str]) -> None:
    with pytest.raises(SystemExit):
        speaches.parse_settings([], env)


def test_speaches_accepts_the_image_command_and_port_env() -> None:
    settings = speaches.parse_settings(["--factory", "speaches.main:create_app"], {"UVICORN_PORT": "8123"})
    assert (settings.host, settings.port, settings.api_key) == ("0.0.0.0", 8123, None)


# --- shared plumbing ------------------------------------------------------------------------


def test_requests_are_recorded_and_can_be_cleared(serve_app: Any) -> None:
    key = secrets.token_hex(16)
    url = serve_app(vllm.VllmApp(vllm.parse_settings(["m", "--api-key", key], {})))
    httpx.post(f"{url}/v1/chat/completions", headers=bearer(key),
               json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    log = httpx.get(f"{url}/__stub__/requests").json()
    assert [(r["method"], r["path"]) for r in log] == [("POST", "/v1/chat/completions")]
    assert log[0]["headers"]["authorization"] == f"Bearer {key}" and log[0]["body"]["model"] == "m"
    httpx.delete(f"{url}/__stub__/requests")
    assert httpx.get(f"{url}/__stub__/requests").json() == []


def test_chunked_request_bodies_are_read(serve_app: Any, tmp_path: Path) -> None:
    url = serve_app(ollama.OllamaApp(ollama.ModelStore(tmp_path)))
    connection = http.client.HTTPConnection(url.removeprefix("http://"))
    body = iter([b'{"model": "qwen3:0.6b", ', b'"stream": false}'])
    connection.request("POST", "/api/pull", body=body, headers={"Content-Type": "application/json"},
                       encode_chunked=True)
    assert json.loads(connection.getresponse().read()) == {"status": "success"}


RESOLVE = "import socket; print(socket.gethostbyname('qwen3'), socket.getaddrinfo('ollama', 80)[0][4][0])"


@pytest.mark.parametrize("resolver", ["unshare", "sitecustomize"])
def test_host_names_resolve_to_loopback_addresses(resolver: str, tmp_path: Path) -> None:
    if resolver == "unshare" and not unshare_works():
        pytest.skip("needs root and unshare")
    argv, env = with_hosts([sys.executable, "-c", RESOLVE], base_env(), {"qwen3": "127.0.0.2", "ollama": "127.0.0.3"},
                           tmp_path, resolver)  # type: ignore[arg-type]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
    assert done.stdout.split() == ["127.0.0.2", "127.0.0.3"], done.stderr
    assert "qwen3" not in Path("/etc/hosts").read_text()  # the mapping never leaks to the host
