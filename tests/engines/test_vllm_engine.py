"""Every generated vLLM command checked by vLLM itself: PyPI `vllm` at the pinned image's release, no GPU.

For each vLLM container of every committed stack (Pulumi.*.yaml), example (examples/*.yaml) and test
stack (tests/**/Pulumi.*.yaml) that renders, the program runs under Pulumi's mocks and the
container's command goes, unchanged, to vLLM's own `vllm serve` parser and validation, then to
vLLM's ModelConfig and rotary embedding over the model's published config.json
(tests/engines/vllm_probe.py, in .venv-vllm). The repo id in the command resolves offline to a
Hugging Face cache laid out in the test's tmp dir (tests/engines/hf_cache.py, HF_HUB_OFFLINE=1).

What was meant comes from the stack file and the model's config.json, never from the command: the
context length (maxModelLen, else the overrides' or the model's max_position_embeddings), the rope
type and factor of the override, and the model's own rope_theta as the rotary base.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from components import vllm as vllm_facts
from config.errors import StackConfigError
from config.placement import placements
from config.source import from_stack_file
from config.validation import validate
from tests.conftest import ROOT
from tests.contract.harness import render
from tests.engines import hf_cache

pytestmark = pytest.mark.engines

PROBE = Path(__file__).resolve().parent / "vllm_probe.py"
PROBE_TIMEOUT = 600


def stack_files() -> list[Path]:
    """Committed stacks, examples and the tests' own stack files."""
    found = sorted(ROOT.glob("Pulumi.*.yaml")) + sorted((ROOT / "examples").glob("*.yaml"))
    found += sorted(p for p in (ROOT / "tests").rglob("Pulumi.*.yaml") if "bad_stacks" not in p.parts)
    return [p for p in found if p.name != "Pulumi.yaml"]


def stack_name(path: Path) -> str:
    return path.name.split(".")[1] if path.name.startswith("Pulumi.") else path.stem


@dataclass(frozen=True)
class Meant:
    """One vLLM entry of a stack file: what its container must give vLLM."""

    case: str
    stack_file: Path
    index: int
    entry: Any  # config.schema.Vllm

    def expected(self) -> dict[str, Any]:
        model = json.loads((hf_cache.fixture_of(self.entry.model) / "config.json").read_text())
        overrides = dict(self.entry.hf_overrides or {})
        rope = overrides.get("rope_parameters") or overrides.get("rope_scaling") or model.get("rope_scaling") or {}
        positions = overrides.get("max_position_embeddings", model["max_position_embeddings"])
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        return {
            "max_model_len": self.entry.max_model_len or positions,
            "max_position_embeddings": positions,
            "rope_type": rope_type,
            "factor": rope.get("factor") if rope_type != "default" else None,
            # The model's own base: an override may rescale the rope, never change its theta.
            "base": float(model["rope_theta"]),
            "quantization": (model.get("quantization_config") or {}).get("quant_method"),
        }


def meant_entries() -> list[Meant]:
    found = []
    for path in stack_files():
        try:
            stack = validate(from_stack_file(path))
        except StackConfigError:
            continue  # not a stack that renders
        # One container per replica (named after it), each with the entry's command.
        for placed in placements(stack):
            if placed.spec.key == "vllm":
                entry = placed.block
                found.append(Meant(f"{stack_name(path)}:{entry.hostname()}", path, placed.loc[1], entry))
    return found


MEANT = meant_entries()


def rendered_commands() -> dict[str, list[str]]:
    """Case id -> the vLLM container's command, from the program run under mocks."""
    commands = {}
    for path in sorted({m.stack_file for m in MEANT}):
        rendered = render(from_stack_file(path), stack_name(path))
        for engine in rendered.engines:
            if engine.engine == "vllm":
                commands[f"{stack_name(path)}:{engine.name}"] = list(engine.command)
    return commands


def with_value(command: list[str], flag: str, value: str) -> list[str]:
    """The command with `flag`'s value replaced (the flag must be there)."""
    out = list(command)
    out[out.index(flag) + 1] = value
    return out


# The form the prod stack had before issue 11: yarn keys only.
BROKEN_OVERRIDE = '{"rope_parameters":{"factor":4.0,"original_max_position_embeddings":32768,"rope_type":"yarn"}}'


def negative_controls(prod: list[str]) -> dict[str, tuple[list[str], str]]:
    """Commands vLLM must refuse (or, for the lost theta, accept wrongly): id -> (argv, what must show)."""
    return {
        "removed-flag": ([*prod, "--swap-space", "4"], "unrecognized arguments: --swap-space"),
        "misspelt-tool-parser": (with_value(prod, "--tool-call-parser", "hermess"), "invalid tool call parser: hermess"),
        "misspelt-reasoning-parser": (with_value(prod, "--reasoning-parser", "qwen33"), "qwen33"),
        "length-beyond-the-model": (with_value(prod, "--max-model-len", "262144"), "greater than the derived max_model_len"),
        "broken-override": (with_value(prod, "--hf-overrides", BROKEN_OVERRIDE), "greater than the derived max_model_len"),
        "broken-override-loses-theta": (
            with_value(with_value(prod, "--hf-overrides", BROKEN_OVERRIDE), "--max-model-len", "40960"),
            "base 10000",
        ),
    }


@pytest.fixture(scope="module")
def probed(vllm_python: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One run of vLLM over every case (importing vLLM takes most of the time)."""
    hf_home = tmp_path_factory.mktemp("hf-home")
    for model in sorted({m.entry.model for m in MEANT}):
        hf_cache.lay_out(hf_home, model, hf_cache.fixture_of(model))
    commands = rendered_commands()
    cases = [{"id": case, "argv": argv} for case, argv in sorted(commands.items())]
    cases += [{"id": f"negative:{case}", "argv": argv} for case, (argv, _) in negative_controls(commands["prod:qwen3"]).items()]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(hf_home),
        "HF_HOME": str(hf_home),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_TARGET_DEVICE": "cpu",  # vLLM's own switch to its CPU platform (see vllm_probe.py)
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
    }
    run = subprocess.run(
        [str(vllm_python), str(PROBE)], input=json.dumps({"cases": cases}), capture_output=True, text=True,
        env=env, cwd=hf_home, timeout=PROBE_TIMEOUT,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    results = json.loads(run.stdout.strip().splitlines()[-1])
    return {"commands": commands, "results": results}


def test_every_vllm_entry_of_every_stack_is_checked(probed):
    assert MEANT, "no vLLM entry in any stack file"
    assert {m.case for m in MEANT} == set(probed["commands"]), "a vLLM entry without a rendered container, or the reverse"
    assert "prod:qwen3" in probed["commands"]


@pytest.mark.parametrize("meant", MEANT, ids=[m.case for m in MEANT])
def test_vllm_accepts_the_command_with_the_meant_context_and_rope(probed, meant):
    result = probed["results"][meant.case]
    assert result["ok"], f"{meant.case}: vLLM refuses {probed['commands'][meant.case]} at {result['stage']}: {result.get('error')}"
    expected = meant.expected()
    entry = meant.entry
    assert result["max_model_len"] == expected["max_model_len"]
    assert result["max_position_embeddings"] == expected["max_position_embeddings"]
    assert result["rope"]["type"] == expected["rope_type"]
    assert result["rope"]["factor"] == expected["factor"]
    assert result["rope"]["base"] == expected["base"], f"{meant.case}: the rotary base is not the model's rope_theta"
    assert result["quantization"] == expected["quantization"]
    assert result["served_model_name"] == entry.name
    assert result["port"] == vllm_facts.PORT
    assert result["reasoning_parser"] == (entry.reasoning_parser or "")
    assert result["tool_call_parser"] == entry.tool_call_parser
    assert result["enable_auto_tool_choice"] == bool(entry.tool_call_parser)


def test_prod_runs_131072_tokens_as_yarn_4_over_32768_with_the_model_base(probed):
    rope = probed["results"]["prod:qwen3"]["rope"]
    assert probed["results"]["prod:qwen3"]["max_model_len"] == 131072
    assert rope == {
        "class": "YaRNScalingRotaryEmbedding", "base": 1000000.0, "type": "yarn", "factor": 4.0,
        "original_max_position_embeddings": 32768, "max_position": 32768,
    }


@pytest.mark.parametrize("control", ["removed-flag", "misspelt-tool-parser", "misspelt-reasoning-parser",
                                     "length-beyond-the-model", "broken-override"])
def test_negative_controls_are_refused_by_vllm(probed, control):
    result = probed["results"][f"negative:{control}"]
    _, shows = negative_controls(probed["commands"]["prod:qwen3"])[control]
    assert not result["ok"], f"vLLM accepted the {control} control"
    assert shows in result["error"], result["error"]


def test_the_old_override_silently_drops_the_model_theta(probed):
    """vLLM accepts the pre-fix override at the model's own length, with the rotary base reset to 10000:
    the base check above is what catches it."""
    result = probed["results"]["negative:broken-override-loses-theta"]
    assert result["ok"], result.get("error")
    assert result["rope"]["base"] == 10000.0


def test_the_vllm_standin_accepts_and_refuses_what_vllm_does(probed):
    """The stand-in the contract test and the rehearsal run (tests/standins/vllm.py) parses like vLLM:
    every command vLLM's parser and validation accept, it accepts with the same values; every one
    they refuse, it refuses. (Checks against the model's config.json are vLLM's alone.)"""
    from tests.standins import vllm as vllm_standin

    argvs = dict(probed["commands"])
    argvs.update({f"negative:{k}": argv for k, (argv, _) in negative_controls(probed["commands"]["prod:qwen3"]).items()})
    for case, argv in sorted(argvs.items()):
        result = probed["results"][case]
        vllm_accepts = result["stage"] not in ("parse", "validate", "reasoning_parser")
        try:
            settings = vllm_standin.parse_settings(argv, {})
        except SystemExit:
            settings = None
        assert (settings is not None) == vllm_accepts, f"{case}: vLLM {'accepts' if vllm_accepts else 'refuses'} {argv}"
        if settings is not None and result["ok"]:
            assert settings.served_model_names == (result["served_model_name"],)
            assert settings.port == result["port"]
            assert settings.max_model_len == result["max_model_len"]
            assert (settings.reasoning_parser or "") == result["reasoning_parser"]
            assert settings.tool_call_parser == result["tool_call_parser"]
