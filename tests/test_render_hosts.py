"""`config render` says, for each resource, the host (under llmstack:hosts) it is created on, so a reviewer sees where everything goes."""

import io
import json

from tests.conftest import ROOT
from config.cli import main


def rendered(path) -> dict:
    out, err = io.StringIO(), io.StringIO()
    assert main(["render", str(path)], out=out, err=err) == 0, err.getvalue()
    return json.loads(out.getvalue())


def test_every_docker_resource_names_its_host_and_state_only_resources_none():
    document = rendered(ROOT / "Pulumi.prod.yaml")
    by_name = {(r["type"].rsplit(":", 1)[-1], r["name"]): r["host"] for r in document["resources"]}
    for resource in document["resources"]:
        if resource["type"].startswith("docker:") or resource["type"] == "pulumi:providers:docker":
            assert resource["host"] == "gpu-01", resource["name"]
    # A model pull runs where `pulumi up` runs but acts on its engine's host; a generated key belongs to its engine.
    assert by_name[("Command", "ollama-pull-qwen2.5vl-7b-q4_K_M")] == "gpu-01"
    assert by_name[("RandomPassword", "qwen3-api-key")] == "gpu-01"
    assert by_name[("VllmServer", "qwen3")] == "gpu-01"
    # The stack CA lives in the state only.
    assert by_name[("SelfSignedCert", "stack-ca-cert")] is None


def test_hosts_follow_the_stack_file():
    document = rendered(ROOT / "Pulumi.dev.yaml")
    assert {r["host"] for r in document["resources"] if r["type"].startswith("docker:")} == {"local"}
