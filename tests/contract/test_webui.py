"""Contract test: the real Open WebUI server (PyPI open-webui, at the image's version) with the envs the dev stack
renders for its container, in front of the real LiteLLM with the rendered config and the stand-in engines.

Through Open WebUI's own HTTP API only: the first admin signs up, the gateway's models are listed, a chat is
answered, a document is uploaded and a question about it is answered (its embeddings and the reranking of the
passages go through the gateway to Infinity's stand-in), a generated WAV is transcribed and speech synthesised
(through the gateway to Speaches' stand-in).

Open WebUI runs in its own venv (.venv-webui, from tests/contract/requirements-webui.txt, made by .ci/run). The
gateway runs without its database, where LiteLLM serves the master key only: the rendered virtual key of Open
WebUI is swapped for the master key, the fallback the README describes. Nothing reaches a hub (OFFLINE_MODE)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Mapping
from urllib.parse import urlsplit

import httpx
import pytest

from components import gateway_key
from components import webui as webui_facts
from config.webui import KEY_ALIAS
from tests.contract import harness
from tests.standins.audio import sine_wav
from tests.standins.gateway import start_gateway, stop_gateway, with_hosts
from tests.standins.launcher import base_env, free_port, spawn, stop, wait_ready

pytestmark = pytest.mark.contract

STACK = "dev"
WEBUI_VENV = Path(os.environ.get("LLMSTACK_WEBUI_VENV") or harness.ROOT / ".venv-webui")
# Its first start migrates a new SQLite database and imports its RAG stack.
WEBUI_START_TIMEOUT = 240.0
ADMIN = {"name": "Admin", "email": "admin@example.com", "password": "contract-Test-pass-7"}
# A fact no model could know: the answer must come from the uploaded document.
DOCUMENT = (
    "Harbour log of the research vessel Quillmoor.\n"
    "The Quillmoor keeps its spare propeller in locker 47B, behind the galley.\n"
    "The crew tests the bilge pumps every Tuesday at dawn.\n"
)
QUESTION = "In which locker does the Quillmoor keep its spare propeller?"


def webui_executable() -> Path:
    return WEBUI_VENV / "bin" / "open-webui"


@pytest.fixture(scope="module")
def webui_installed() -> Path:
    """The `open-webui` script of the webui venv; the tests skip without it, except where CI requires it."""
    executable = webui_executable()
    if not executable.exists():
        message = f"{executable} not found: python3 -m venv .venv-webui && .venv-webui/bin/pip install -r tests/contract/requirements-webui.txt"
        if os.environ.get("LLMSTACK_WEBUI_REQUIRED") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return executable


@pytest.fixture(scope="module")
def rendered() -> harness.Rendered:
    return harness.render(harness.stack_file(STACK), STACK)


def webui_env(rendered: harness.Rendered) -> dict[str, str]:
    """The Open WebUI container's envs as rendered (secrets revealed)."""
    [container] = [r for r in rendered.plan.of_type(harness.CONTAINER) if r.name == "webui"]
    return harness.env_dict(container.revealed().get("envs"))


class WebUI:
    """A running Open WebUI, the stand-ins and the gateway behind it."""

    def __init__(self, url: str, deployment: harness.Deployment, log: Path, gateway_url: str) -> None:
        self.url = url
        self.gateway_url = gateway_url
        self.deployment = deployment
        self.log = log
        self.token = ""

    def call(self, method: str, path: str, timeout: float = 120.0, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        reply = httpx.request(method, self.url + path, headers=headers, timeout=timeout, **kwargs)
        assert reply.status_code == 200, f"{method} {path} answered {reply.status_code}: {reply.text[:2000]}"
        return reply

    def engine_calls(self, engine: str, path: str) -> list[dict[str, Any]]:
        """What the stand-ins of one engine kind received on one path."""
        found = []
        for backend in self.deployment.backends.values():
            if backend.container.engine == engine:
                found += [r for r in backend.requests() if r["path"] == path]
        return found


@pytest.fixture(scope="module")
def webui(
    rendered: harness.Rendered, webui_installed: Path, litellm_installed: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebUI]:
    workdir = tmp_path_factory.mktemp("contract-webui")
    env = webui_env(rendered)
    gateway = urlsplit(env["OPENAI_API_BASE_URL"])
    assert gateway.hostname and gateway.port
    # The gateway's own address: its network alias, at its port, as Open WebUI's envs name it.
    address = harness.loopback_addresses({gateway.hostname: gateway.port})[gateway.hostname]
    with harness.deploy(rendered, workdir, redis=harness.redis_available(), with_gateway=False) as deployment:
        config_path = workdir / "config.yaml"
        config_path.write_text(rendered.config_text)
        gateway_url, gateway_process = start_gateway(
            config_path, harness.gateway_env(rendered), hosts=deployment.hosts, port=gateway.port, bind=address,
            workdir=workdir / "gateway", timeout=harness.GATEWAY_START_TIMEOUT,
        )
        process = None
        try:
            # Without its database LiteLLM knows only the master key: the documented fallback for the UI's key.
            own_key = env[webui_facts.CHAT_KEY_ENV]
            env = {name: (rendered.master_key if value == own_key else value) for name, value in env.items()}
            env["DATA_DIR"] = str(workdir / "webui-data")  # the container's /app/backend/data
            port = free_port()
            child_env = base_env({**env, "HOME": str(workdir / "home")})
            child_env.pop("PYTHONPATH", None)  # the repo's `config` package must not shadow anything
            argv, child_env = with_hosts(
                [str(webui_installed), "serve", "--host", "127.0.0.1", "--port", str(port)],
                child_env, {gateway.hostname: address}, workdir,
            )
            log = workdir / "webui.log"
            started = time.monotonic()
            process = spawn(argv, child_env, log, cwd=workdir)
            url = f"http://127.0.0.1:{port}"
            wait_ready(url + "/health", process, WEBUI_START_TIMEOUT, log_path=log)
            harness.observe(f"webui: Open WebUI {webui_facts.VERSION} answered /health {time.monotonic() - started:.1f} s after start")
            yield WebUI(url, deployment, log, gateway_url)
        finally:
            if process is not None:
                stop(process, grace=15.0)
            stop_gateway(gateway_process)


@pytest.fixture(scope="module")
def admin(webui: WebUI) -> WebUI:
    """The first account: Open WebUI makes it the admin."""
    reply = webui.call("POST", "/api/v1/auths/signup", json=ADMIN).json()
    assert reply["role"] == "admin" and reply["email"] == ADMIN["email"]
    webui.token = reply["token"]
    return webui


def test_the_rendered_envs_hold_no_master_key_and_turn_every_feature_on(rendered: harness.Rendered) -> None:
    env = webui_env(rendered)
    assert rendered.master_key not in env.values()
    assert env[webui_facts.CHAT_KEY_ENV].startswith("sk-")
    for name in webui_facts.key_envs({"embedding_model": "x", "reranking_model": "x", "transcription_model": "x", "speech_model": "x"}):  # type: ignore[typeddict-item]
        assert env[name] == env[webui_facts.CHAT_KEY_ENV]
    assert env["ENABLE_PERSISTENT_CONFIG"] == "False" and env["ENABLE_OLLAMA_API"] == "False"
    assert env["RAG_EXTERNAL_RERANKER_URL"] == env["OPENAI_API_BASE_URL"] + "/rerank"


def test_first_admin_lists_the_gateway_models(admin: WebUI, rendered: harness.Rendered) -> None:
    models = {m["id"] for m in admin.call("GET", "/api/models").json()["data"]}
    assert set(rendered.outputs["models"]["chat"]) <= models, models


def test_a_chat_is_answered_through_the_gateway(admin: WebUI) -> None:
    env = webui_env(admin.deployment.rendered)
    model = env["DEFAULT_MODELS"]
    admin.deployment.clear_requests()
    body = {"model": model, "stream": False, "messages": [{"role": "user", "content": "Say hello to the contract test."}]}
    reply = admin.call("POST", "/api/chat/completions", json=body).json()
    assert "stand-in reply to: Say hello to the contract test." in reply["choices"][0]["message"]["content"]
    assert admin.engine_calls("ollama", "/api/chat"), "the chat never reached Ollama's stand-in"


def test_a_question_about_an_uploaded_document_uses_its_embeddings_and_the_reranker(admin: WebUI) -> None:
    env = webui_env(admin.deployment.rendered)
    stack = admin.deployment.rendered
    embedder = stack.engine("infinity")
    admin.deployment.clear_requests()
    uploaded = admin.call(
        "POST", "/api/v1/files/?process=true&process_in_background=false",
        files={"file": ("quillmoor.txt", DOCUMENT.encode(), "text/plain")},
    ).json()
    embedded = admin.engine_calls("infinity", "/embeddings")
    assert embedded, f"uploading embedded nothing through the gateway: {uploaded}"
    assert any("locker 47B" in str(call["body"].get("input")) for call in embedded)
    body = {
        "model": env["DEFAULT_MODELS"],
        "stream": False,
        "messages": [{"role": "user", "content": QUESTION}],
        "files": [{"type": "file", "id": uploaded["id"]}],
    }
    admin.deployment.clear_requests()
    reply = admin.call("POST", "/api/chat/completions", json=body, timeout=300).json()
    assert reply["choices"][0]["message"]["content"]
    reranked = admin.engine_calls("infinity", "/rerank")
    assert reranked, "the question was not reranked through the gateway"
    assert any("locker 47B" in str(call["body"].get("documents")) for call in reranked)
    # The passage the reranker kept reaches the chat model with the question.
    chats = [str(call["body"].get("messages")) for call in admin.engine_calls("ollama", "/api/chat")]
    assert any("locker 47B" in text and QUESTION in text for text in chats), chats
    harness.observe(
        f"webui: upload: {len(embedded)} embedding call(s) at {embedder.name}; question: "
        f"{len(admin.engine_calls('infinity', '/embeddings'))} embedding, {len(reranked)} rerank, {len(chats)} chat call(s)"
    )


def test_a_generated_wav_is_transcribed_through_the_gateway(admin: WebUI) -> None:
    admin.deployment.clear_requests()
    reply = admin.call("POST", "/api/v1/audio/transcriptions", files={"file": ("hello.wav", sine_wav(1.0), "audio/wav")}).json()
    assert isinstance(reply.get("text"), str), reply
    calls = admin.engine_calls("speaches", "/v1/audio/transcriptions")
    assert calls, "the WAV never reached Speaches' stand-in"


def test_speech_is_synthesised_through_the_gateway(admin: WebUI) -> None:
    env = webui_env(admin.deployment.rendered)
    admin.deployment.clear_requests()
    reply = admin.call("POST", "/api/v1/audio/speech", json={"input": "Hello from the contract test."})
    assert len(reply.content) > 100
    [call] = admin.engine_calls("speaches", "/v1/audio/speech")
    assert call["body"]["voice"] == env["AUDIO_TTS_VOICE"]


def test_without_its_database_the_gateway_refuses_virtual_keys_and_the_registration_says_so(webui: WebUI) -> None:
    """The registration script as `pulumi up` runs it in the gateway container, against the real LiteLLM without
    its database (the only mode that runs here): it must fail loudly, naming the call, never printing the key."""
    key = "sk-" + secrets.token_hex(24)
    body = json.dumps(gateway_key.register_body(KEY_ALIAS, ["qwen2.5-0.5b"]))
    done = subprocess.run(
        [sys.executable, "-c", gateway_key.REGISTER_SCRIPT, webui.gateway_url, body],
        input=key, capture_output=True, text=True, timeout=120,
        env=base_env({"LITELLM_MASTER_KEY": webui.deployment.master_key}),
    )
    assert done.returncode != 0, done.stdout
    assert "/key/generate answered HTTP" in done.stderr, done.stderr
    assert key not in done.stdout + done.stderr
    harness.observe(f"webui: key registration without a database: {done.stderr.strip()[:160]}")
