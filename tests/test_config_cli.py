"""`python -m config check|render`: exit codes, error texts with key paths and fixes, no traceback, the printed plan."""

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from config.cli import main
from config.plan import run_program
from config.source import from_stack_file
from tests.conftest import ROOT, STACK_FILES
from tests.test_exposure import secret_values

VALID_VLLM = {"name": "qwen3", "model": "Qwen/Qwen3-30B-A3B-FP8", "gpus": ["0"]}


def write_stack(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "Pulumi.test.yaml"
    path.write_text(yaml.safe_dump({"config": config}))
    return path


def run_check(tmp_path: Path, config: dict) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["check", str(write_stack(tmp_path, config))], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("path", STACK_FILES, ids=lambda p: p.name)
def test_repo_stack_files_pass(path):
    out = io.StringIO()
    assert main(["check", str(path)], out=out, err=out) == 0, out.getvalue()
    first, *rest = out.getvalue().splitlines()
    assert ": ok:" in first
    # A stack over several hosts adds where each engine runs, one line per host.
    assert rest == [] or (rest[0] == "engines per host:" and all(line.startswith("  ") for line in rest[1:])), rest


# (config, key path in the message, a piece of the fix)
BAD = [
    ({"vllm": [VALID_VLLM], "hsots": {}}, "llmstack:hsots", "did you mean `hosts`"),
    ({"vllm": [{**VALID_VLLM, "gpuMemoryUtilisation": 0.8}]}, "llmstack:vllm[0].gpuMemoryUtilisation", "did you mean `gpuMemoryUtilization`"),
    ({"vllm": [VALID_VLLM], "masterKey": "sk-plaintext-key-in-file"}, "llmstack:masterKey", "pulumi config set --secret llmstack:masterKey"),
    ({"vllm": [VALID_VLLM], "hfToken": "hf_plain"}, "llmstack:hfToken", "pulumi config set --secret llmstack:hfToken"),
    ({"vllm": [{**VALID_VLLM, "gpuMemoryUtilization": 1.5}]}, "llmstack:vllm[0].gpuMemoryUtilization", "(0, 1]"),
    ({"vllm": [{**VALID_VLLM, "extraArgs": ["--swap-space", "4"]}]}, "llmstack:vllm[0].extraArgs", "remove it"),
    ({"vllm": [{**VALID_VLLM, "extraArgs": ["--rope-scaling", "{}"]}]}, "llmstack:vllm[0].extraArgs", "hfOverrides"),
    ({"vllm": [{**VALID_VLLM, "extraArgs": ["--max-model-len", "4096"]}]}, "llmstack:vllm[0].extraArgs", "maxModelLen"),
    ({"vllm": [VALID_VLLM, VALID_VLLM]}, "llmstack:vllm[1].name", "unique name"),
    ({"vllm": [{**VALID_VLLM, "name": "litellm"}]}, "llmstack:vllm[0].name", "another model name"),
    ({"vllm": [{**VALID_VLLM, "name": "bad name!"}]}, "llmstack:vllm[0].name", "Docker name"),
    ({"vllm": [{**VALID_VLLM, "host": "gpu-02"}]}, "llmstack:vllm[0].host", "use one of the hosts"),
    ({"vllm": [VALID_VLLM], "hosts": {"a": {"docker": "http://x"}}}, "llmstack:hosts.a.docker", "ssh://user@host"),
    ({"vllm": [VALID_VLLM], "hosts": {"a": {"docker": "tcp://x:2376", "sshOpts": ["-v"]}}}, "llmstack:hosts.a.sshOpts", "ssh://"),
    ({"vllm": [VALID_VLLM], "network": {"subnet": "10.0.0.1/8"}}, "llmstack:network.subnet", "CIDR"),
    ({"vllm": [VALID_VLLM], "gateway": {"port": 70000}}, "llmstack:gateway.port", "lower the value"),
    ({"vllm": [VALID_VLLM], "gateway": {"bind": "everywhere"}}, "llmstack:gateway.bind", "0.0.0.0"),
    ({"vllm": [VALID_VLLM], "gateway": {"routingStrategy": "fastest"}}, "llmstack:gateway.routingStrategy", "simple-shuffle"),
    ({"vllm": [VALID_VLLM], "gateway": {"fallbacks": {"qwen3": ["qwen4"]}}}, "llmstack:gateway.fallbacks.qwen3[0]", "name a model"),
    ({"vllm": [VALID_VLLM], "gateway": {"rateLimits": {"qwen4": {"rpm": 1}}}}, "llmstack:gateway.rateLimits.qwen4", "did you mean `qwen3`"),
    ({"vllm": [VALID_VLLM], "gateway": {"numRetries": "three"}}, "llmstack:gateway.numRetries", "whole number"),
    ({}, "llmstack:vllm", "configure at least one"),
    ({"vllm": [{"name": "qwen3"}]}, "llmstack:vllm[0].model", "add this key"),
    ({"vllm": [{**VALID_VLLM, "gpus": "0"}]}, "llmstack:vllm[0].gpus", "list of device ids"),
]


@pytest.mark.parametrize("config,path,fix", BAD, ids=[b[1] + ":" + b[2][:20] for b in BAD])
def test_each_mistake_names_key_and_fix(tmp_path, config, path, fix):
    code, out, err = run_check(tmp_path, config)
    assert code == 2
    assert out == ""
    line = next((l for l in err.splitlines() if f"- {path}:" in l), None)
    assert line is not None, err
    assert "Fix:" in line and fix in line, line
    assert "Traceback" not in err


def test_every_error_is_listed_at_once(tmp_path):
    code, _, err = run_check(
        tmp_path,
        {"vllm": [{**VALID_VLLM, "gpuMemoryUtilisation": 0.8}], "masterKey": "sk-x", "gateway": {"port": 0}, "hsots": {}},
    )
    assert code == 2
    assert err.startswith("4 errors in the llmstack stack config:")


def test_secure_values_are_opaque_and_other_namespaces_ignored(tmp_path):
    code, out, err = run_check(
        tmp_path,
        {"llmstack:vllm": [VALID_VLLM], "llmstack:masterKey": {"secure": "AAABAJ5g"}, "aws:region": "eu-west-1"},
    )
    assert (code, err) == (0, ""), err


def test_secure_value_on_a_non_secret_key(tmp_path):
    code, _, err = run_check(tmp_path, {"vllm": [{**VALID_VLLM, "model": {"secure": "AAAB"}}]})
    assert code == 2 and "llmstack:vllm[0].model: holds an encrypted value" in err


def test_unreadable_and_broken_files(tmp_path):
    err = io.StringIO()
    assert main(["check", str(tmp_path / "missing.yaml")], out=err, err=err) == 2
    broken = tmp_path / "Pulumi.broken.yaml"
    broken.write_text("config:\n  llmstack:vllm: [\n")
    assert main(["check", str(broken)], out=err, err=err) == 2
    assert "not valid YAML at line" in err.getvalue() and "Traceback" not in err.getvalue()


def test_cli_process_exit_codes(tmp_path):
    bad = write_stack(tmp_path, {"vllm": [{**VALID_VLLM, "gpus": []}]})
    run = subprocess.run([sys.executable, "-m", "config", "check", str(bad)], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 2 and "llmstack:vllm[0].gpus" in run.stderr and "Traceback" not in run.stderr
    usage = subprocess.run([sys.executable, "-m", "config", "frobnicate"], cwd=ROOT, capture_output=True, text=True)
    assert usage.returncode == 2 and "Traceback" not in usage.stderr


def test_render_prints_resources_config_and_hides_secrets(tmp_path):
    path = write_stack(tmp_path, {"vllm": [VALID_VLLM]})
    out, err = io.StringIO(), io.StringIO()
    assert main(["render", str(path)], out=out, err=err) == 0
    assert "GPU plan" in err.getvalue()
    document = json.loads(out.getvalue())
    types = {r["type"] for r in document["resources"]}
    assert {"docker:index/container:Container", "docker:index/volume:Volume", "pulumi:providers:docker"} <= types
    assert document["litellmConfig"]["model_list"][0]["model_name"] == "qwen3"
    gateway = next(r for r in document["resources"] if r["name"] == "gateway" and r["type"].endswith("Container"))
    # Each env as NAME=value, only the secret values masked: a reviewer sees how the gateway is wired.
    assert gateway["inputs"]["envs"] == [
        "DATABASE_URL=[secret]", "LITELLM_LOCAL_MODEL_COST_MAP=True", "LITELLM_MASTER_KEY=[secret]",
        "LITELLM_SALT_KEY=[secret]", "PYTHON_GC_THRESHOLD=5000,20,100", "REDIS_PASSWORD=[secret]", "VLLM_QWEN3_API_KEY=[secret]",
    ]
    engine = next(r for r in document["resources"] if r["name"] == "qwen3" and r["type"].endswith("Container"))
    assert "VLLM_API_KEY=[secret]" in engine["inputs"]["envs"]
    assert all(item.endswith("=[secret]") or "KEY" not in item for item in engine["inputs"]["envs"])
    rendered = out.getvalue()
    values = set(secret_values(run_program(from_stack_file(path))))
    assert values and not any(value in rendered for value in values)
    assert document["outputs"]["masterKey"] == "[secret]"
    out_yaml = io.StringIO()
    assert main(["render", str(path), "--format", "yaml"], out=out_yaml, err=io.StringIO()) == 0
    assert yaml.safe_load(out_yaml.getvalue()) == document


@pytest.mark.parametrize("path", STACK_FILES, ids=lambda p: p.name)
def test_render_is_byte_identical(path):
    first, second = io.StringIO(), io.StringIO()
    assert main(["render", str(path)], out=first, err=io.StringIO()) == 0
    assert main(["render", str(path)], out=second, err=io.StringIO()) == 0
    assert first.getvalue() == second.getvalue()
