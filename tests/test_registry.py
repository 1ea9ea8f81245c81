"""A new engine is one component module and one section module: a throwaway engine registered here is picked up everywhere."""

import io
import json
from typing import NotRequired, Optional, TypedDict

import pulumi
import pytest
from pydantic import Field

from components.container import docker_name as container_docker_name
from components.engine import EngineDescription, EngineServer
from components.model_entry import engine_entries, key_env_name
from config import engine_ids, registry
from config.errors import ConfigIssue
from config.cli import main, summary
from config.deployment import DeployContext, EngineDeployment
from config.errors import StackConfigError
from config.plan import is_secret, reveal, run_program
from config.registry import SectionSpec
from config.schema import ModelName, Section, SharedEngine
from config.sections import image_and_gpus
from config.source import from_pulumi_config
from config.validation import check_stack

from .conftest import container

CONTAINER = "docker:index/container:Container"


# --- the component module of a new engine (what would be components/tei.py) ---
class TeiModel(TypedDict):
    name: str
    model: str


class TeiServerArgs(TypedDict):
    network_name: pulumi.Input[str]
    models: list[TeiModel]
    gpus: NotRequired[list[str]]
    image: NotRequired[str]
    name_prefix: NotRequired[str]


class TeiServer(EngineServer):
    def __init__(self, name: str, args: TeiServerArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("test:index:TeiServer", name, {}, opts)
        [model] = args["models"]
        description = EngineDescription(
            component="tei",
            container_name=container_docker_name(args.get("name_prefix"), "tei"),
            hostname="tei",
            image=args.get("image") or "ghcr.io/huggingface/text-embeddings-inference:cpu-1.8",
            command=["--model-id", model["model"], "--port", "80"],
            health_test=["CMD", "curl", "-fsS", "http://localhost:80/health"],
            health_start_period="10m",
            data_path="/data",
            data_volume=container_docker_name(args.get("name_prefix"), "tei-data"),
            data_resource="data",
            key_env="API_KEY",
            gpus=args.get("gpus"),
        )
        self._build(name, description, args["network_name"], opts)
        key_env = key_env_name("tei", "")
        entries = engine_entries(
            [{**m, "mode": "embedding"} for m in args["models"]], prefix="openai/", api_base="http://tei:80/v1", key_env=key_env, modes=("embedding",)
        )
        self._expose("http://tei:80/v1", entries, key_env)


# --- the section module of the new engine (what would be config/sections/tei.py) ---
class TeiModelSection(Section):
    name: ModelName
    model: str = Field(min_length=1)


class Tei(SharedEngine):
    models: list[TeiModelSection] = Field(min_length=1, max_length=1)

    def base_hostname(self) -> str:
        return "tei"

    def gateway_key_env(self) -> Optional[str]:
        return key_env_name("tei", "")


def deploy(section: Tei, context: DeployContext) -> EngineDeployment:
    args: TeiServerArgs = {
        "network_name": context.site(section).network.name,
        "models": [{"name": m.name, "model": m.model} for m in section.models],
    }
    args.update(image_and_gpus(section))  # type: ignore[typeddict-item]
    if context.name_prefix:
        args["name_prefix"] = context.name_prefix
    return context.place(section, lambda opts: TeiServer("tei", args, opts=opts))


def model_ids(section: Tei, loc: tuple, stack) -> list[ConfigIssue]:
    """TEI's own check, in its section module: ids as the hub writes them."""
    return [
        issue
        for i, m in enumerate(section.models)
        for issue in engine_ids.model_issue(
            (*loc, "models", i, "model"), m.model, engine_ids.hf_model_problem(m.model, local_path=True), engine_ids.HF_FIX
        )
    ]


@pytest.fixture
def tei_section():
    spec = registry.register(SectionSpec(key="tei", model=Tei, deploy=deploy, hostnames=("tei",), checks=(model_ids,)))
    yield spec
    registry.unregister("tei")


TEI = {"models": [{"name": "gte", "model": "Alibaba-NLP/gte-base-en-v1.5"}]}
VLLM = {"name": "qwen3", "model": "Qwen/Qwen3-8B", "gpus": ["0"], "gpuMemoryUtilization": "auto"}


def test_the_section_is_part_of_the_schema_and_the_derived_lists(tei_section):
    assert "tei" in registry.stack_model().model_fields
    assert "tei" in registry.structured_keys()
    assert "tei" in registry.reserved_names()
    assert registry.section_keys()[-1] == "vllm"  # vLLM measures free memory: it still comes last
    # Pulumi hands structured values to the program as JSON text: the new key is parsed like the others.
    raw = from_pulumi_config({"llmstack:tei": json.dumps(TEI)}, set(), "llmstack")
    assert raw == {"tei": TEI}


def test_a_stack_using_it_renders_with_its_container_key_and_gateway_entry(tei_section):
    plan = run_program({"tei": TEI, "vllm": [VLLM], "hosts": {"local": {"gpus": [{"id": "0", "memoryGiB": 24}]}}})
    tei = container(plan, "tei")
    assert tei.inputs["name"] == "dev-tei" and tei.inputs["command"] == ["--model-id", "Alibaba-NLP/gte-base-en-v1.5", "--port", "80"]
    assert plan.named("tei-data").retain_on_delete
    assert is_secret(tei.inputs["envs"]) and any(e.startswith("API_KEY=") for e in reveal(tei.inputs["envs"]))
    gateway = reveal(container(plan, "gateway").inputs)
    [upload] = gateway["uploads"]
    assert "model_name: gte" in upload["content"] and "os.environ/TEI_API_KEY" in upload["content"]
    key = next(e for e in reveal(tei.inputs["envs"]) if e.startswith("API_KEY=")).split("=", 1)[1]
    assert f"TEI_API_KEY={key}" in gateway["envs"]
    assert plan.outputs["models"]["embedding"] == ["gte"]


def test_validation_and_gpu_plan_read_it(tei_section):
    with pytest.raises(StackConfigError) as error:
        check_stack({"tei": {"models": [{"name": "vllm-x", "model": ""}], "vramGiB": 2}})
    report = error.value.report()
    assert "llmstack:tei.models[0].model" in report
    # A model named like the engine's container is refused, as for the built-in engines.
    with pytest.raises(StackConfigError, match=r"llmstack:tei.models\[0\].name: 'tei' is the name of a stack service container"):
        check_stack({"tei": {"models": [{"name": "tei", "model": "a/b"}]}})
    # The GPU plan counts it on its GPU, and vLLM's `auto` leaves it its share.
    checked = check_stack(
        {"hosts": {"local": {"gpus": [{"id": "0", "memoryGiB": 24}]}}, "tei": {**TEI, "gpus": ["0"], "vramGiB": 2}, "vllm": [VLLM]}
    )
    assert [(row.service, row.reserved_gib) for row in checked.gpu_plan.rows][0] == ("tei", 3.0)
    assert checked.gpu_plan.utilizations == {"qwen3": 0.83}  # (24 - 3 - 1) / 24 = 0.833


def test_its_own_checks_and_the_stack_wide_ones_run_on_it(tei_section):
    with pytest.raises(StackConfigError) as error:
        check_stack({"tei": {"models": [{"name": "gte", "model": "--trust-remote-code"}], "image": "Not An Image!"}})
    report = error.value.report()
    assert "llmstack:tei.models[0].model: '--trust-remote-code' is not a Hugging Face repo id" in report
    assert "it starts with '-' and would be read as an option" in report
    assert "llmstack:tei.image: 'Not An Image!' is not a Docker image reference" in report  # stack-wide image check


def test_vllm_starts_after_it_on_a_shared_gpu(tei_section):
    plan = run_program(
        {"hosts": {"local": {"gpus": [{"id": "0", "memoryGiB": 24}]}}, "tei": {**TEI, "gpus": ["0"], "vramGiB": 2}, "vllm": [VLLM]}
    )
    assert container(plan, "tei").urn in container(plan, "qwen3").depends_on


def test_check_summarises_it(tei_section, tmp_path):
    stack_file = tmp_path / "Pulumi.tei.yaml"
    stack_file.write_text(json.dumps({"config": {"llmstack:tei": TEI}}))
    out = io.StringIO()
    assert main(["check", str(stack_file)], out=out) == 0
    assert "engines: tei, 1 model(s)" in out.getvalue()
    assert "engines: tei" in summary(stack_file, check_stack({"tei": TEI}).config)


def test_without_the_module_the_key_is_unknown():
    with pytest.raises(StackConfigError, match=r"llmstack:tei: unknown key"):
        check_stack({"tei": TEI})
