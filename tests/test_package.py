"""components/ as a package for other projects: the schema its provider serves, and a pip install used by another program."""

import ast
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import grpc
import pytest
import yaml
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

from components.__main__ import PACKAGE_NAME, PROVIDER_NAME, load_package, served_components

ROOT = Path(__file__).resolve().parent.parent
COMPONENTS = served_components(load_package())
PLUGIN_DIR = ROOT / "components"
TYPES = f"#/types/{PROVIDER_NAME}:index:"
ENGINES = ("VllmServer", "OllamaServer", "InfinityServer", "SpeachesServer")
# What Pulumi's python host runs: `python <plugin dir> <engine address>`; nothing listens at this address.
UNUSED_ENGINE = "127.0.0.1:1"
# Left out of the copy the pip test installs from: caches, virtualenvs, build output.
NOT_SOURCE = shutil.ignore_patterns(".*", "venv", "build", "*.egg-info", "__pycache__", "sdks", "node_modules")


def clean_env() -> dict[str, str]:
    """This environment without PYTHONPATH, so a child process sees only what it is given."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def run_python(python: str, script: Path, cwd: Path, timeout: int = 120) -> dict:
    """Runs a script and returns the JSON it prints last."""
    done = subprocess.run(
        [python, str(script)], cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{script.name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def schema(tmp_path_factory) -> dict:
    """The schema the provider serves, read over gRPC from `python components/` started the way Pulumi starts it."""
    cwd = tmp_path_factory.mktemp("pulumi-pwd")
    plugin = subprocess.Popen(
        [sys.executable, str(PLUGIN_DIR), UNUSED_ENGINE],
        cwd=cwd,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert plugin.stdout is not None and plugin.stderr is not None
    try:
        port = plugin.stdout.readline().strip()
        assert port.isdigit(), f"the provider did not start:\n{plugin.stderr.read()[-6000:]}"
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = provider_pb2_grpc.ResourceProviderStub(channel)
            response = stub.GetSchema(provider_pb2.GetSchemaRequest(version=0), timeout=60)
        return json.loads(response.schema)
    finally:
        plugin.terminate()
        try:
            plugin.wait(timeout=10)
        except subprocess.TimeoutExpired:
            plugin.kill()
            plugin.wait()


def resource(schema: dict, name: str) -> dict:
    return schema["resources"][f"{PROVIDER_NAME}:index:{name}"]


def test_plugin_manifest_runs_the_entry_point_with_python():
    manifest = yaml.safe_load((PLUGIN_DIR / "PulumiPlugin.yaml").read_text())
    assert manifest == {"runtime": "python"}
    assert (PLUGIN_DIR / "__main__.py").is_file()


def test_provider_serves_every_component_under_its_type_token(schema):
    assert schema["name"] == PROVIDER_NAME
    assert set(schema["resources"]) == {f"{PROVIDER_NAME}:index:{name}" for name in COMPONENTS.values()}
    assert set(COMPONENTS.values()) == {*ENGINES, "LiteLLMProxy", "Prometheus", "Grafana", "GpuExporter"}
    assert all(r["isComponent"] for r in schema["resources"].values())


def test_vllm_server_schema(schema):
    vllm = resource(schema, "VllmServer")
    assert vllm["requiredInputs"] == ["model", "networkName", "servedModelName"]
    assert vllm["inputProperties"]["hfOverrides"]["additionalProperties"]["$ref"] == "pulumi.json#/Any"
    outputs = vllm["properties"]
    assert outputs["apiBase"]["type"] == "string"
    assert outputs["modelEntries"]["type"] == "array"
    assert outputs["modelEntries"]["items"]["$ref"] == TYPES + "LiteLLMModelEntry"
    assert outputs["backendKeys"]["type"] == "object"
    assert outputs["backendKeys"]["additionalProperties"]["type"] == "string"


@pytest.mark.parametrize("engine", ENGINES)
def test_every_engine_exposes_its_endpoint_and_gateway_entries(schema, engine):
    spec = resource(schema, engine)
    assert "networkName" in spec["requiredInputs"]
    assert spec["properties"]["apiBase"]["type"] == "string"
    assert spec["properties"]["modelEntries"]["items"]["$ref"] == TYPES + "LiteLLMModelEntry"
    assert {"apiBase", "modelEntries"} <= set(spec["required"])


@pytest.mark.parametrize("engine", ("OllamaServer", "InfinityServer", "SpeachesServer"))
def test_multi_model_engines_take_a_list_of_typed_models(schema, engine):
    models = resource(schema, engine)["inputProperties"]["models"]
    assert "models" in resource(schema, engine)["requiredInputs"]
    assert models["type"] == "array"
    model_type = models["items"]["$ref"].removeprefix(TYPES)
    assert model_type in {n.split(":")[-1] for n in schema["types"]}
    assert {"name", "model"} <= set(schema["types"][f"{PROVIDER_NAME}:index:{model_type}"]["required"])


def test_litellm_proxy_schema(schema):
    proxy = resource(schema, "LiteLLMProxy")
    assert proxy["requiredInputs"] == ["models", "networkName"]
    inputs = proxy["inputProperties"]
    assert inputs["models"]["items"]["$ref"] == TYPES + "LiteLLMModelEntry"
    assert inputs["backendKeys"]["additionalProperties"]["type"] == "string"
    assert inputs["settings"]["$ref"] == TYPES + "GatewaySettings"
    settings = schema["types"][f"{PROVIDER_NAME}:index:GatewaySettings"]["properties"]
    assert settings["rateLimits"]["additionalProperties"]["$ref"] == TYPES + "RateLimit"
    assert settings["fallbacks"]["additionalProperties"]["items"]["type"] == "string"
    outputs = proxy["properties"]
    assert outputs["masterKey"]["type"] == "string"
    assert outputs["port"]["type"] == "integer"
    assert outputs["modelNames"]["items"]["type"] == "string"


def test_model_entry_type(schema):
    entry = schema["types"][f"{PROVIDER_NAME}:index:LiteLLMModelEntry"]
    assert entry["required"] == ["apiBase", "mode", "model", "modelName"]
    assert set(entry["properties"]) == {
        "modelName", "model", "apiBase", "mode", "apiKeyEnv", "maxTokens", "supportsFunctionCalling",
    }


def test_every_component_type_and_property_is_documented(schema):
    undocumented = []
    for token, spec in [*schema["resources"].items(), *schema["types"].items()]:
        if not (spec.get("description") or "").strip():
            undocumented.append(token)
        for kind in ("inputProperties", "properties"):
            for name, prop in spec.get(kind, {}).items():
                if not (prop.get("description") or "").strip():
                    undocumented.append(f"{token} {kind}.{name}")
    assert not undocumented


def test_plugin_requirements_cover_every_third_party_import():
    """Pulumi installs components/requirements.txt (not pyproject.toml) into the plugin's venv."""
    required = {
        re.split(r"[<>=!~ \[;]", line, maxsplit=1)[0].strip().lower().replace("_", "-")
        for line in (PLUGIN_DIR / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    }
    distributions = importlib.metadata.packages_distributions()
    imported = set()
    for source in PLUGIN_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {m for m in imported if m not in sys.stdlib_module_names}
    needed = {distributions[m][0].lower().replace("_", "-") for m in third_party}
    assert needed <= required, f"missing from components/requirements.txt: {sorted(needed - required)}"


# Run in a child process: the provider's components register with their own Pulumi mocks there.
PROVIDER_ROUND_TRIP = textwrap.dedent(
    """
    import json
    import sys

    import pulumi

    sys.path.insert(0, sys.argv[1] if len(sys.argv) > 1 else ".")
    from components.__main__ import LlmstackProvider, component_classes, load_package


    class Mocks(pulumi.runtime.Mocks):
        def new_resource(self, args):
            outputs = dict(args.inputs)
            if args.typ == "random:index/randomPassword:RandomPassword":
                outputs["result"] = "p" * int(args.inputs.get("length", 16))
            if args.typ == "docker:index/remoteImage:RemoteImage":
                outputs["imageId"] = "sha256:0"
            return f"{args.name}-id", outputs

        def call(self, args):
            return {}, None


    pulumi.runtime.set_mocks(Mocks(), project="consumer", stack="dev", preview=False)
    provider = LlmstackProvider(component_classes(load_package()), "llmstack")
    report = {}


    @pulumi.runtime.test
    def round_trip():
        # As a TypeScript or Go program sends inputs: schema (camelCase) names, often as Outputs.
        network = pulumi.Output.from_input("llm")
        vllm = provider.construct(
            "qwen3", "llmstack:index:VllmServer",
            {"servedModelName": "qwen3", "model": "Qwen/Qwen3-0.6B", "networkName": network, "toolCallParser": "hermes"},
        )
        qwen = {"modelName": "qwen3", "model": "hosted_vllm/qwen3", "apiBase": "http://qwen3:8000/v1", "mode": "chat",
                "apiKeyEnv": "VLLM_QWEN3_API_KEY", "supportsFunctionCalling": True}
        small = {"modelName": "small", "model": "ollama_chat/qwen3:0.6b", "apiBase": "http://ollama:11434", "mode": "chat"}
        # The whole list as one Output (it depends on another resource) ...
        gateway = provider.construct(
            "gateway", "llmstack:index:LiteLLMProxy",
            {"networkName": network, "models": network.apply(lambda _: [qwen]), "backendKeys": vllm.state["backendKeys"],
             "settings": {"numRetries": 1, "rateLimits": {"qwen3": {"rpm": 60}}}},
        )
        # ... or a list holding Outputs.
        mixed = provider.construct(
            "mixed", "llmstack:index:LiteLLMProxy",
            {"networkName": "llm", "models": [pulumi.Output.from_input(qwen), small], "namePrefix": "mixed"},
        )

        def keep(values):
            report["entries"], report["config_yaml"], report["backend_keys"], report["mixed_names"] = values

        return pulumi.Output.all(
            vllm.state["modelEntries"], gateway.state["configYaml"], vllm.state["backendKeys"], mixed.state["modelNames"]
        ).apply(keep)


    round_trip()
    print(json.dumps(report))
    """
)


def test_provider_speaks_schema_names_in_lists_and_outputs(tmp_path):
    script = tmp_path / "round_trip.py"
    script.write_text(PROVIDER_ROUND_TRIP)
    report = run_python(sys.executable, script, cwd=ROOT)
    assert report["entries"] == [
        {
            "modelName": "qwen3",
            "model": "hosted_vllm/qwen3",
            "apiBase": "http://qwen3:8000/v1",
            "mode": "chat",
            "apiKeyEnv": "VLLM_QWEN3_API_KEY",
            "supportsFunctionCalling": True,
        }
    ]
    config = yaml.safe_load(report["config_yaml"])
    assert config["model_list"] == [
        {
            "model_name": "qwen3",
            "litellm_params": {
                "model": "hosted_vllm/qwen3",
                "api_base": "http://qwen3:8000/v1",
                "api_key": "os.environ/VLLM_QWEN3_API_KEY",
                "rpm": 60,
            },
            "model_info": {"mode": "chat", "supports_function_calling": True},
        }
    ]
    assert config["litellm_settings"]["num_retries"] == 1
    assert list(report["backend_keys"]) == ["VLLM_QWEN3_API_KEY"]
    assert report["mixed_names"] == ["qwen3", "small"]


CONSUMER_OWN_COMPONENTS = '''"""The consumer's own components package: the same name as llmstack's folder, and no clash with it."""

OWNER = "consumer"
'''

# A Pulumi program of another project: its own `components` package, llmstack's library from pip.
CONSUMER_PROGRAM = '''"""Another project's program: a vLLM server behind the gateway, on a remote Docker host."""

import pulumi
import pulumi_docker as docker

import components
import llmstack_components as llm

gpu_host = docker.Provider("gpu-01", host="ssh://deploy@gpu-01")
on_gpu_host = pulumi.ResourceOptions(providers=[gpu_host])
network = docker.Network("llm", name="llm", opts=on_gpu_host)

qwen = llm.VllmServer(
    "qwen3",
    {"served_model_name": "qwen3", "model": "Qwen/Qwen3-30B-A3B-FP8", "network_name": network.name, "gpus": ["0"]},
    opts=on_gpu_host,
)
gateway = llm.LiteLLMProxy(
    "gateway",
    {
        "network_name": network.name,
        "models": qwen.model_entries,
        "backend_keys": qwen.backend_keys,
        "settings": {"num_retries": 2},
    },
    opts=on_gpu_host,
)
pulumi.export("owner", components.OWNER)
pulumi.export("api_base", qwen.api_base)
pulumi.export("config_yaml", gateway.config_yaml)
pulumi.export("model_names", gateway.model_names)
'''

CONSUMER_UNDER_MOCKS = '''"""Runs the consumer's program under Pulumi's mocks and prints what it built."""

import json
import runpy
import sys

import pulumi

registered = []


class Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args):
        registered.append({"type": args.typ, "name": args.name, "provider": args.provider or ""})
        outputs = dict(args.inputs)
        if args.typ == "random:index/randomPassword:RandomPassword":
            outputs["result"] = "p" * int(args.inputs.get("length", 16))
        if args.typ == "docker:index/remoteImage:RemoteImage":
            outputs["imageId"] = "sha256:0"
        return f"{args.name}-id", outputs

    def call(self, args):
        return {}, None


pulumi.runtime.set_mocks(Mocks(), project="consumer", stack="dev", preview=False)
exported = {}


@pulumi.runtime.test
def program():
    def export(name, value):
        exported[name] = value

    pulumi.export = export
    runpy.run_path("__main__.py", run_name="__main__")
    names = sorted(exported)
    return pulumi.Output.all(*[exported[n] for n in names]).apply(lambda values: exported.update(zip(names, values)))


program()
import components
import llmstack_components

print(json.dumps({
    "exports": exported,
    "registered": registered,
    "components_file": components.__file__,
    "library_file": llmstack_components.__file__,
    "library_exports": sorted(llmstack_components.__all__),
    "plugin_manifest": (__import__("pathlib").Path(llmstack_components.__file__).parent / "PulumiPlugin.yaml").is_file(),
}))
'''


def import_paths_of_this_environment(python: str) -> list[str]:
    """This process's import path less the repository and what `python` already has: pulumi and co., not our `components`."""
    own = subprocess.run(
        [python, "-c", "import json, sys; print(json.dumps(sys.path))"], check=True, capture_output=True, text=True
    )
    known = {str(Path(entry).resolve()) for entry in json.loads(own.stdout) if entry} | {str(ROOT)}
    return [e for e in dict.fromkeys(sys.path) if e and Path(e).is_dir() and str(Path(e).resolve()) not in known]


def test_another_project_installs_the_library_with_pip_and_builds_a_gateway(tmp_path):
    source = tmp_path / "llmstack"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = str(venv / "bin" / "python")
    install = subprocess.run(
        [
            sys.executable, "-m", "pip", "--python", python, "install",
            "--no-deps", "--ignore-installed", "--quiet", "--disable-pip-version-check", str(source),
        ],
        env=clean_env(), capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stderr[-6000:]
    site_packages = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
    )
    # llmstack is installed for real; its dependencies (pulumi, pulumi-docker, ...) come from this environment,
    # after the venv's own site-packages. Written after the install: pip's isolated build must not see them.
    (site_packages / "test-environment.pth").write_text("\n".join(import_paths_of_this_environment(python)) + "\n")

    consumer = tmp_path / "consumer"
    (consumer / "components").mkdir(parents=True)
    (consumer / "components" / "__init__.py").write_text(CONSUMER_OWN_COMPONENTS)
    (consumer / "__main__.py").write_text(CONSUMER_PROGRAM)
    (consumer / "run_under_mocks.py").write_text(CONSUMER_UNDER_MOCKS)
    report = run_python(python, consumer / "run_under_mocks.py", cwd=consumer)

    assert Path(report["components_file"]) == consumer / "components" / "__init__.py"
    assert Path(report["library_file"]).is_relative_to(site_packages / PACKAGE_NAME)
    assert report["plugin_manifest"]
    assert set(COMPONENTS.values()) <= set(report["library_exports"])
    assert report["exports"]["owner"] == "consumer"
    assert report["exports"]["api_base"] == "http://qwen3:8000/v1"
    assert report["exports"]["model_names"] == ["qwen3"]
    config = yaml.safe_load(report["exports"]["config_yaml"])
    assert [m["model_name"] for m in config["model_list"]] == ["qwen3"]
    assert config["litellm_settings"]["num_retries"] == 2
    containers = {r["name"]: r for r in report["registered"] if r["type"] == "docker:index/container:Container"}
    assert {"qwen3", "gateway", "gateway-postgres", "gateway-redis"} <= set(containers)
    # The consumer's Docker provider reaches every container through the components.
    assert all("gpu-01" in c["provider"] for c in containers.values())
