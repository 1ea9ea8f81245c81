"""The real Infinity (PyPI infinity-emb at the pinned image's release, .venv-infinity) behind the real LiteLLM.

For the prod stack (GPU image) and the dev stack (`-cpu` image), the program runs under mocks and the
Infinity container's command and envs run unchanged on loopback, with two additions the container
gets elsewhere: the envs its image sets (IMAGE_ENVS) and, instead of huggingface.co, the hub
stand-in (HF_ENDPOINT, tests/standins/hf_hub.py) serving tiny random-weight models under the ids
the stack names (tests/engines/tiny_models.py). Infinity lists and downloads them through
huggingface_hub as it would from the hub. The other engines are the contract test's stand-ins;
LiteLLM gets the rendered config and gateway envs, as in tests/contract/.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest

from components import infinity as infinity_facts
from config.validation import validate
from tests.contract import harness
from tests.engines.tiny_models import HIDDEN
from tests.standins.gateway import start_gateway, stop_gateway
from tests.standins.launcher import base_env, free_port, spawn, standin_argv, stop, wait_ready

pytestmark = pytest.mark.engines

TINY_MODELS = Path(__file__).resolve().parent / "tiny_models.py"
START_TIMEOUT = 240.0
DOCUMENTS = ["paris is the capital of france", "a cat and a dog", "berlin is in germany"]
# ENV lines of the images (libs/infinity_emb/Dockerfile.*_auto at 0.0.77): the -cpu image
# defaults to the ONNX engine (`ENV INFINITY_ENGINE="optimum"`); the CUDA image sets no engine,
# so Infinity's default, torch, runs.
IMAGE_ENVS = {infinity_facts.CPU_IMAGE: {"INFINITY_ENGINE": "optimum"}, infinity_facts.GPU_IMAGE: {}}
BACKENDS = {infinity_facts.CPU_IMAGE: "optimum", infinity_facts.GPU_IMAGE: "torch"}


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"Infinity exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"Infinity not healthy after {timeout:.0f}s:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="module", params=["prod", "dev"])
def running(request, infinity_python: Path, litellm_installed: str, tmp_path_factory: pytest.TempPathFactory):
    name = request.param
    rendered = harness.render(harness.stack_file(name), name)
    stack = validate(harness.stack_file(name))
    image = infinity_facts.image_for(stack.infinity.gpus)
    workdir = tmp_path_factory.mktemp(f"infinity-{name}")
    repos = workdir / "hub"
    specs = [f"{m.mode}:{m.model}" for m in stack.infinity.models]
    made = subprocess.run([str(infinity_python), str(TINY_MODELS), str(repos), *specs], capture_output=True, text=True,
                          env=base_env({"HF_HUB_OFFLINE": "1"}), timeout=600)
    assert made.returncode == 0, made.stderr[-4000:]
    hub_port = free_port()
    hub = spawn(standin_argv("hf_hub", ["--root", str(repos), "--port", str(hub_port)]), base_env(), workdir / "hub.log")
    hub_url = f"http://127.0.0.1:{hub_port}"
    try:
        wait_ready(f"{hub_url}/api/models/{stack.infinity.models[0].model}", hub, 30, log_path=workdir / "hub.log")
        with harness.deploy(rendered, workdir / "deployment", with_gateway=False) as deployment:
            backend = deployment.backends["infinity"]
            backend.stop()  # the stand-in leaves its address to the real engine
            container = backend.container
            env = {**IMAGE_ENVS[image], **harness._rebased_env(container.env, workdir / "rootfs"),
                   "INFINITY_HOST": backend.ip, "HF_ENDPOINT": hub_url, "HOME": str(workdir / "home")}
            child_env = base_env(env)
            child_env.pop("PYTHONPATH", None)  # the engine's venv alone: nothing of this repository
            log = workdir / "infinity.log"
            process = spawn([str(infinity_python.parent / "infinity_emb"), *container.command], child_env, log, cwd=workdir)
            gateway = None
            try:
                wait_healthy(backend.url, process, log, START_TIMEOUT)
                config = workdir / "config.yaml"
                config.write_text(rendered.config_text)
                url, gateway = start_gateway(config, harness.gateway_env(rendered), hosts=deployment.hosts, workdir=workdir / "gateway")
                yield {"stack": stack, "image": image, "gateway": url, "infinity": backend.url, "container": container,
                       "env": {**IMAGE_ENVS[image], **container.env}, "workdir": workdir,
                       "key": container.env["INFINITY_API_KEY"], "master": rendered.master_key}
            finally:
                if gateway is not None:
                    stop_gateway(gateway)
                stop(process)
    finally:
        stop(hub)


def model_name(stack, mode: str) -> str:
    return next(m.name for m in stack.infinity.models if m.mode == mode)


def test_embeddings_through_the_gateway(running):
    name = model_name(running["stack"], "embedding")
    reply = httpx.post(f"{running['gateway']}/embeddings", headers={"Authorization": f"Bearer {running['master']}"},
                       json={"model": name, "input": ["the cat", "the capital of france"]}, timeout=60)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["object"] == "list"
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert all(len(d["embedding"]) == HIDDEN and all(isinstance(x, float) for x in d["embedding"]) for d in body["data"])
    assert body["data"][0]["embedding"] != body["data"][1]["embedding"]


def test_rerank_through_the_gateway(running):
    name = model_name(running["stack"], "rerank")
    reply = httpx.post(f"{running['gateway']}/rerank", headers={"Authorization": f"Bearer {running['master']}"},
                       json={"model": name, "query": "capital of france", "documents": DOCUMENTS, "top_n": 3}, timeout=60)
    assert reply.status_code == 200, reply.text
    results = reply.json()["results"]
    assert sorted(r["index"] for r in results) == [0, 1, 2]
    assert all(isinstance(r["relevance_score"], float) for r in results)
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer sk-wrong"}], ids=["no-key", "wrong-key"])
@pytest.mark.parametrize("route", ["/embeddings", "/rerank", "/models"])
def test_infinity_refuses_a_missing_or_wrong_key(running, headers, route):
    stack = running["stack"]
    bodies = {
        "/embeddings": {"model": next(m.model for m in stack.infinity.models if m.mode == "embedding"), "input": ["x"]},
        "/rerank": {"model": next(m.model for m in stack.infinity.models if m.mode == "rerank"), "query": "q", "documents": ["d"]},
    }
    if route in bodies:
        reply = httpx.post(running["infinity"] + route, headers=headers, json=bodies[route], timeout=30)
    else:
        reply = httpx.get(running["infinity"] + route, headers=headers, timeout=30)
    assert reply.status_code == 401, reply.text
    assert reply.json() == {"detail": "Unauthorized"}


def test_health_is_open_and_the_engine_key_opens_models(running):
    assert httpx.get(running["infinity"] + "/health", timeout=10).status_code == 200
    reply = httpx.get(running["infinity"] + "/models", headers={"Authorization": f"Bearer {running['key']}"}, timeout=10)
    assert reply.status_code == 200
    models = reply.json()["data"]
    assert {m["id"] for m in models} == {m.model for m in running["stack"].infinity.models}
    # The engine the image runs: ONNX (optimum) for -cpu, torch for the CUDA image.
    assert {m["backend"] for m in models} == {BACKENDS[running["image"]]}


def shape(value):
    """The structure of a JSON value: keys, value types, list lengths (numbers stand for themselves only by type)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return "number" if isinstance(value, (int, float)) and not isinstance(value, bool) else type(value).__name__


def calls(running) -> dict[str, tuple[str, str, dict, dict | None]]:
    """Requests the gateway and the smoke check make, and the mistakes they can meet."""
    models = running["stack"].infinity.models
    embedder = next(m.model for m in models if m.mode == "embedding")
    reranker = next(m.model for m in models if m.mode == "rerank")
    key = {"Authorization": f"Bearer {running['key']}"}
    return {
        "models": ("GET", "/models", key, None),
        "embeddings": ("POST", "/embeddings", key, {"model": embedder, "input": ["a cat", "the capital"]}),
        "embeddings-one-string": ("POST", "/embeddings", key, {"model": embedder, "input": "a cat"}),
        "rerank": ("POST", "/rerank", key, {"model": reranker, "query": "capital", "documents": DOCUMENTS,
                                              "return_documents": True, "top_n": 2}),
        "no-key": ("POST", "/embeddings", {}, {"model": embedder, "input": ["a"]}),
        "embeddings-on-a-reranker": ("POST", "/embeddings", key, {"model": reranker, "input": ["a"]}),
        "rerank-on-an-embedder": ("POST", "/rerank", key, {"model": embedder, "query": "q", "documents": ["d"]}),
        "unknown-model": ("POST", "/embeddings", key, {"model": "org/unknown", "input": ["a"]}),
    }


@pytest.fixture(scope="module")
def standin_url(running):
    """The Infinity stand-in (tests/standins/infinity.py) started from the same command and envs."""
    ip = harness.loopback_addresses({"standin": 7997})["standin"]
    env = base_env({**running["env"], "INFINITY_HOST": ip})
    log = running["workdir"] / "standin.log"
    process = spawn(standin_argv("infinity", list(running["container"].command)), env, log)
    url = f"http://{ip}:7997"
    try:
        wait_ready(url + "/health", process, 30, log_path=log)
        yield url
    finally:
        stop(process)


@pytest.mark.parametrize("call", ["models", "embeddings", "embeddings-one-string", "rerank", "no-key",
                                  "embeddings-on-a-reranker", "rerank-on-an-embedder", "unknown-model"])
def test_the_standin_answers_like_the_real_engine(running, standin_url, call):
    method, path, headers, body = calls(running)[call]
    real = httpx.request(method, running["infinity"] + path, headers=headers, json=body, timeout=60)
    standin = httpx.request(method, standin_url + path, headers=headers, json=body, timeout=60)
    assert standin.status_code == real.status_code, (real.text, standin.text)
    assert shape(standin.json()) == shape(real.json()), (real.text, standin.text)
    if call == "models":
        listed = {m["id"]: (m["backend"], m["capabilities"]) for m in real.json()["data"]}
        assert {m["id"]: (m["backend"], m["capabilities"]) for m in standin.json()["data"]} == listed
