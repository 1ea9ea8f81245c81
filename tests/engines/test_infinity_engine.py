"""The real Infinity (PyPI infinity-emb at the pinned image's release, .venv-infinity) behind the real LiteLLM.

The prod stack is rendered by the program under mocks; its Infinity container's command and envs run
unchanged on loopback (only the listen address is set, as tests/contract/harness.py does for
stand-ins), on tiny random-weight models made by the test in folders named after the ids the stack
names (tests/engines/tiny_models.py; Infinity runs in their parent folder, HF_HUB_OFFLINE=1). The
other engines are the contract test's stand-ins; LiteLLM gets the rendered config and gateway envs.

Engine: the prod (GPU) image sets no INFINITY_ENGINE, so Infinity's default, torch, runs here as in
that image. The dev stack's `-cpu` image sets INFINITY_ENGINE=optimum (ONNX), whose model loading
lists the repo's files on the hub (HfApi.list_repo_files) for a repo id, and for a local folder given
by a relative id joins the folder twice (`<id>/<id>/model.onnx`): it cannot run offline here, so
only a host with hub access checks the -cpu engine.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from config.validation import validate
from tests.contract import harness
from tests.engines.tiny_models import HIDDEN
from tests.standins.gateway import start_gateway, stop_gateway
from tests.standins.launcher import base_env, spawn, stop

pytestmark = pytest.mark.engines

TINY_MODELS = Path(__file__).resolve().parent / "tiny_models.py"
START_TIMEOUT = 240.0
DOCUMENTS = ["paris is the capital of france", "a cat and a dog", "berlin is in germany"]


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


@pytest.fixture(scope="module")
def running(infinity_python: Path, litellm_installed: str, tmp_path_factory: pytest.TempPathFactory):
    rendered = harness.render(harness.stack_file("prod"), "prod")
    stack = validate(harness.stack_file("prod"))
    workdir = tmp_path_factory.mktemp("infinity-engine")
    models = workdir / "models"
    specs = [f"{m.mode}:{m.model}" for m in stack.infinity.models]
    made = subprocess.run([str(infinity_python), str(TINY_MODELS), str(models), *specs], capture_output=True, text=True,
                          env=base_env({"HF_HUB_OFFLINE": "1"}), timeout=600)
    assert made.returncode == 0, made.stderr[-4000:]
    with harness.deploy(rendered, workdir / "deployment", with_gateway=False) as deployment:
        backend = deployment.backends["infinity"]
        backend.stop()  # the stand-in leaves its address to the real engine
        container = backend.container
        env = {**harness._rebased_env(container.env, workdir / "rootfs"), "INFINITY_HOST": backend.ip, "HF_HUB_OFFLINE": "1",
               "HOME": str(workdir / "home")}
        argv = [str(infinity_python.parent / "infinity_emb"), *container.command]
        log = workdir / "infinity.log"
        child_env = base_env(env)
        child_env.pop("PYTHONPATH", None)  # the engine's venv alone: nothing of this repository
        process = spawn(argv, child_env, log, cwd=models)
        gateway = None
        try:
            wait_healthy(backend.url, process, log, START_TIMEOUT)
            config = workdir / "config.yaml"
            config.write_text(rendered.config_text)
            url, gateway = start_gateway(config, harness.gateway_env(rendered), hosts=deployment.hosts, workdir=workdir / "gateway")
            yield {"rendered": rendered, "stack": stack, "gateway": url, "infinity": backend.url,
                   "key": container.env["INFINITY_API_KEY"], "master": rendered.master_key}
        finally:
            if gateway is not None:
                stop_gateway(gateway)
            stop(process)


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
    ids = {m["id"] for m in reply.json()["data"]}
    assert ids == {m.model for m in running["stack"].infinity.models}
