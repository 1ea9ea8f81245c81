"""Every Docker name is scoped by stack, so two stacks share a Docker engine without sharing a container, volume or network."""

import pytest

from config.errors import StackConfigError
from config.plan import Plan, reveal, run_program
from config.source import from_stack_file
from config.validation import check_stack
from tests.conftest import ROOT, container

DOCKER_NAMED = ("docker:index/container:Container", "docker:index/volume:Volume", "docker:index/network:Network")


def docker_names(plan: Plan) -> set[str]:
    return {r.inputs["name"] for r in plan.resources if r.type in DOCKER_NAMED}


def aliases(plan: Plan) -> dict[str, list[str]]:
    return {
        r.name: reveal(r.inputs["networksAdvanced"])[0]["aliases"] for r in plan.of_type("docker:index/container:Container")
    }


@pytest.fixture(scope="module")
def dev_and_staging() -> tuple[Plan, Plan]:
    raw = from_stack_file(ROOT / "Pulumi.dev.yaml")
    return run_program(raw, stack="dev"), run_program(raw, stack="staging")


def test_two_stacks_on_one_engine_render_disjoint_docker_names(dev_and_staging):
    dev, staging = dev_and_staging
    assert docker_names(dev) and not docker_names(dev) & docker_names(staging)
    assert all(name.startswith("dev-") for name in docker_names(dev))
    assert all(name.startswith("staging-") for name in docker_names(staging))
    # What the gateway uses to reach each service is the same in both: the aliases on each stack's own network.
    assert aliases(dev) == aliases(staging)
    assert aliases(dev)["ollama"] == ["ollama"] and aliases(dev)["gateway"] == ["litellm"]
    dev_config = reveal(container(dev, "gateway").inputs["uploads"])[0]["content"]
    assert dev_config == reveal(container(staging, "gateway").inputs["uploads"])[0]["content"]


def test_labels_carry_project_and_stack(dev_and_staging):
    _, staging = dev_and_staging
    for resource in staging.resources:
        if resource.type in DOCKER_NAMED:
            labels = {label["label"]: label["value"] for label in resource.inputs["labels"]}
            assert labels["llmstack.project"] == "llmstack" and labels["llmstack.stack"] == "staging", resource.name


def test_model_pulls_and_removals_address_the_container_by_id(dev_and_staging):
    dev, _ = dev_and_staging
    for pull in dev.of_type("command:local:Command"):
        for script in (pull.inputs["create"], pull.inputs["delete"]):
            assert "exec ollama-id " in script or "exec speaches-id " in script, pull.name
            assert "exec dev-" not in script and "inspect --format '{{.State.Running}}' dev-" not in script


def test_the_prefix_can_be_set_or_turned_off():
    raw = from_stack_file(ROOT / "Pulumi.dev.yaml")
    assert all(n.startswith("team-a-") for n in docker_names(run_program({**raw, "namePrefix": "team-a"}, stack="dev")))
    unprefixed = docker_names(run_program({**raw, "namePrefix": ""}, stack="dev"))
    assert {"ollama", "litellm", "litellm-postgres-data", "llm"} <= unprefixed


@pytest.mark.parametrize("prefix", ["-dev", "a b", "x" * 32, "dév"])
def test_a_prefix_that_cannot_start_a_docker_name_is_refused(prefix):
    with pytest.raises(StackConfigError, match="llmstack:namePrefix: .* is not a Docker name prefix"):
        check_stack({"namePrefix": prefix, "ollama": {"models": [{"name": "m", "model": "qwen2.5:0.5b"}]}})
