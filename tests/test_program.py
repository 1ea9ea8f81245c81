"""The program as `pulumi up` runs it: config mistakes stop it before any resource, secrets stay secret, output is stable."""

import json

import pulumi
import pytest

from config.plan import is_secret, masked, reveal, run_program
from config.secrets import SecretValue
from tests.conftest import STACK_FILES, plan_of_file

VLLM = [{"name": "qwen3", "model": "Qwen/Qwen3-30B-A3B-FP8", "gpus": ["0"]}]


def test_config_mistake_stops_before_any_resource():
    with pytest.raises(pulumi.RunError) as stop:
        run_program({"vllm": [{**VLLM[0], "gpuMemoryUtilization": 2}], "hsots": {}})
    text = str(stop.value)
    assert "llmstack:vllm[0].gpuMemoryUtilization" in text and "did you mean `hosts`" in text
    assert "Traceback" not in text


def test_nothing_registered_on_a_mistake(monkeypatch):
    recorded = []
    import config.plan as plan_module

    original = plan_module._RecordingMonitor.RegisterResource

    def spy(self, request):
        recorded.append(request.type)
        return original(self, request)

    monkeypatch.setattr(plan_module._RecordingMonitor, "RegisterResource", spy)
    with pytest.raises(pulumi.RunError):
        run_program({"vllm": VLLM, "masterKey": "sk-in-plaintext"})
    assert [t for t in recorded if t != "pulumi:pulumi:Stack"] == []


def _walk_strings(value, secret=False):
    if is_secret(value):
        yield from _walk_strings(value["value"], True)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _walk_strings(v, secret)
    elif isinstance(value, list):
        for v in value:
            yield from _walk_strings(v, secret)
    elif isinstance(value, str):
        yield value, secret


@pytest.mark.parametrize("path", STACK_FILES, ids=lambda p: p.name)
def test_known_secrets_appear_only_as_secrets(path):
    from config.source import from_stack_file

    raw = from_stack_file(path)
    raw["masterKey"] = SecretValue()
    raw["hfToken"] = SecretValue()
    master, token = "sk-" + "m" * 10 + "KNOWNMASTER" + "m" * 20, "hf_KNOWNTOKEN0123456789"
    plan = run_program(raw, stack="scan", secrets={"masterKey": master, "hfToken": token}, password=lambda name, n: f"PW{name}PW".ljust(n, "x"))
    known = [master, token] + [f"PW{r.name}PW" for r in plan.of_type("random:index/randomPassword:RandomPassword")]
    for resource in plan.resources:
        for text, secret in _walk_strings(resource.inputs):
            for value in known:
                assert secret or value not in text, f"{value} in plaintext in {resource.type} {resource.name}"
    for name, output in plan.outputs.items():
        for text, secret in _walk_strings(output):
            assert secret or not any(v in text for v in known), f"stack output {name} leaks a secret"
    assert is_secret(plan.outputs["masterKey"]) and reveal(plan.outputs["masterKey"]) == master


def test_generated_secrets_are_secret_outputs():
    plan = run_program({"vllm": VLLM})
    assert is_secret(plan.outputs["masterKey"])
    assert reveal(plan.outputs["masterKey"]).startswith("sk-")


@pytest.mark.parametrize("path", STACK_FILES, ids=lambda p: p.name)
def test_same_config_same_plan(path):
    first, second = plan_of_file(path), plan_of_file(path)

    def canonical(plan):
        return json.dumps(
            sorted(([r.type, r.name, masked(r.inputs), r.retain_on_delete] for r in plan.resources), key=lambda x: (x[0], x[1])),
            sort_keys=True,
        )

    assert canonical(first) == canonical(second)


def test_hosts_become_providers_and_networks():
    plan = run_program(
        {
            "hosts": {"gpu-01": {"docker": "ssh://deploy@gpu-01", "sshOpts": ["-o", "StrictHostKeyChecking=accept-new"]}},
            "network": {"name": "llm", "subnet": "192.168.0.0/24"},
            "vllm": VLLM,
        }
    )
    provider = plan.named("host-gpu-01")
    assert provider.type == "pulumi:providers:docker"
    assert provider.inputs["host"] == "ssh://deploy@gpu-01"
    assert json.loads(provider.inputs["sshOpts"]) == ["-o", "StrictHostKeyChecking=accept-new"] if isinstance(provider.inputs["sshOpts"], str) else provider.inputs["sshOpts"] == ["-o", "StrictHostKeyChecking=accept-new"]
    network = plan.named("network-gpu-01")
    assert network.inputs["name"] == "dev-llm" and network.inputs["ipamConfigs"] == [{"subnet": "192.168.0.0/24"}]
    assert network.provider == "host-gpu-01"
    for resource in plan.of_type("docker:index/container:Container"):
        assert resource.provider == "host-gpu-01", resource.name
    assert plan.outputs["gatewayUrl"] == "http://gpu-01:4000"


def test_logical_names_are_unique_per_type():
    for path in STACK_FILES:
        plan = plan_of_file(path)
        keys = [(r.type, r.name) for r in plan.resources]
        assert len(keys) == len(set(keys)), path
        containers = [r.inputs["name"] for r in plan.of_type("docker:index/container:Container")]
        assert len(containers) == len(set(containers))
