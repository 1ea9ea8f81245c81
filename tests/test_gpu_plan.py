"""The GPU memory plan: fit per card, `auto` sizing, device ids against the inventory, start order, and what render shows."""

import io
import json
import textwrap
from pathlib import Path

import pulumi
import pytest
import yaml

from config import gpu_plan
from config.cli import main
from config.errors import StackConfigError
from config.plan import run_program
from config.deployment import DeployContext, EngineDeployment, PlacedEngine
from config.placement import placements
from config.sites import Site
from config.validation import check_stack, validate

CONTAINER = "docker:index/container:Container"


def inventory(*cards: tuple[str, float]) -> dict:
    return {"gpu-01": {"docker": "ssh://deploy@gpu-01", "gpus": [{"id": i, "memoryGiB": m} for i, m in cards]}}


def vllm(name: str = "qwen3", **extra) -> dict:
    return {"name": name, "model": "Qwen/Qwen3-30B-A3B-FP8", **extra}


OLLAMA = {"models": [{"name": "qwen2.5-vl", "model": "qwen2.5vl:7b-q4_K_M"}]}
INFINITY = {"models": [{"name": "nomic", "model": "nomic-ai/nomic-embed-text-v1.5", "mode": "embedding"}]}
SPEACHES = {"models": [{"name": "whisper", "model": "Systran/faster-whisper-small", "mode": "transcription"}]}


def design_stack(utilization) -> dict:
    """The design card's example: one 80 GiB card shared by vLLM and the three engines (8 + 4 + 3 GiB)."""
    return {
        "hosts": inventory(("0", 80)),
        "vllm": [vllm(gpus=["0"], gpuMemoryUtilization=utilization)],
        "ollama": {**OLLAMA, "gpus": "all", "vramGiB": 8},
        "infinity": {**INFINITY, "gpus": "all", "vramGiB": 4},
        "speaches": {**SPEACHES, "gpus": "all", "vramGiB": 3},
    }


def issues_of(raw: dict) -> list[str]:
    with pytest.raises(StackConfigError) as error:
        validate(raw)
    return [str(issue) for issue in error.value.issues]


def rows(plan: gpu_plan.GpuPlan) -> list[tuple]:
    return [(r.host, r.gpu, r.service, r.reserved_gib, r.free_gib) for r in plan.rows]


def test_feasible_plan_rows_in_start_order():
    plan = gpu_plan.plan(validate(design_stack(0.7)))
    assert plan.issues == [] and plan.checked == {"gpu-01": True}
    # reserved = share + 1 GiB margin; free runs down the card in start order (engines, then vLLM).
    assert rows(plan) == [
        ("gpu-01", "0", "infinity", 5.0, 75.0),
        ("gpu-01", "0", "ollama", 9.0, 66.0),
        ("gpu-01", "0", "speaches", 4.0, 62.0),
        ("gpu-01", "0", "vllm/qwen3", 57.0, 5.0),
    ]
    assert plan.utilizations == {"qwen3": 0.7}


def test_infeasible_plan_names_host_gpu_each_share_and_the_largest_fit():
    [text] = issues_of(design_stack(0.8))
    assert text.startswith("llmstack:vllm[0].gpuMemoryUtilization: GPU '0' of host 'gpu-01' is over-committed: 83 GiB reserved of 80 GiB")
    for part in ("ollama 8 GiB (vramGiB)", "infinity 4 GiB (vramGiB)", "speaches 3 GiB (vramGiB)", "vllm/qwen3 64 GiB (gpuMemoryUtilization 0.8)"):
        assert part in text
    assert "plus 1 GiB CUDA context for each of the 4 service(s)" in text
    # (80 - 15 - 3 margins - 1 for vLLM's own context) / 80 = 0.7625 -> 0.76
    assert "Fix: set llmstack:vllm[0].gpuMemoryUtilization to 0.76 or less (the largest that fits), or to auto" in text
    assert "lower the vramGiB of infinity, ollama, speaches" in text


def test_largest_fit_is_itself_accepted():
    assert validate(design_stack(0.76))
    issues_of(design_stack(0.77))


def test_unset_utilization_counts_as_the_vllm_default():
    raw = {"hosts": inventory(("0", 24)), "vllm": [vllm(gpus=["0"])], "ollama": {**OLLAMA, "gpus": ["0"], "vramGiB": 2}}
    [text] = issues_of(raw)
    assert "vllm/qwen3 22.08 GiB (gpuMemoryUtilization 0.92, the vLLM default)" in text
    assert "to 0.83 or less" in text  # (24 - 3 - 1) / 24 = 0.8333
    # Unset stays unset in the deployed command (vLLM applies its own default).
    fits = gpu_plan.plan(validate({**raw, "hosts": inventory(("0", 80))}))  # 73.6 + 1 + 2 + 1 <= 80
    assert fits.utilizations == {"qwen3": None} and fits.rows[-1].reserved_gib == 74.6


def test_engines_alone_over_a_card_point_at_the_inventory():
    raw = {"hosts": inventory(("0", 8)), "ollama": {**OLLAMA, "gpus": ["0"], "vramGiB": 6}, "infinity": {**INFINITY, "gpus": ["0"], "vramGiB": 1.5}}
    [text] = issues_of(raw)
    assert text.startswith("llmstack:hosts.gpu-01.gpus[0]: GPU '0' of host 'gpu-01' is over-committed: 9.5 GiB reserved of 8 GiB")
    assert "Fix: lower the vramGiB of infinity, ollama; or move a service to another GPU" in text


def test_auto_takes_what_the_others_leave_rounded_down():
    plan = gpu_plan.plan(validate(design_stack("auto")))
    assert plan.issues == []
    assert plan.utilizations == {"qwen3": 0.76}  # 61 / 80 = 0.7625
    assert rows(plan)[-1] == ("gpu-01", "0", "vllm/qwen3", 61.8, 0.2)  # 0.76 * 80 + 1


def test_auto_alone_on_a_card_leaves_only_its_own_margin():
    plan = gpu_plan.plan(validate({"hosts": inventory(("0", 80)), "vllm": [vllm(gpus=["0"], gpuMemoryUtilization="auto")]}))
    assert plan.utilizations == {"qwen3": 0.98}  # 79 / 80 = 0.9875


def test_auto_over_tensor_parallel_takes_the_tightest_card():
    raw = {
        "hosts": inventory(("0", 80), ("1", 48)),
        "vllm": [vllm(gpus=["0", "1"], gpuMemoryUtilization="auto")],
        "ollama": {**OLLAMA, "gpus": ["0"], "vramGiB": 10},
        "infinity": {**INFINITY, "gpus": ["1"], "vramGiB": 6},
    }
    plan = gpu_plan.plan(validate(raw))
    # card 0: (80 - 11 - 1) / 80 = 0.85; card 1: (48 - 7 - 1) / 48 = 0.8333 -> 0.83
    assert plan.utilizations == {"qwen3": 0.83}
    assert rows(plan) == [
        ("gpu-01", "0", "ollama", 11.0, 69.0),
        ("gpu-01", "0", "vllm/qwen3", 67.4, 1.6),
        ("gpu-01", "1", "infinity", 7.0, 41.0),
        ("gpu-01", "1", "vllm/qwen3", 40.84, 0.16),
    ]


def test_tensor_parallel_overflow_is_reported_on_the_full_card_only():
    raw = {
        "hosts": inventory(("0", 80), ("1", 80)),
        "vllm": [vllm(gpus=["0", "1"], gpuMemoryUtilization=0.9)],
        "ollama": {**OLLAMA, "gpus": ["1"], "vramGiB": 8},
    }
    [text] = issues_of(raw)
    assert "GPU '1' of host 'gpu-01' is over-committed: 82 GiB reserved of 80 GiB" in text
    assert "to 0.87 or less" in text  # card 1 decides: (80 - 9 - 1) / 80 = 0.875


def test_auto_with_nothing_left():
    raw = {"hosts": inventory(("0", 16)), "vllm": [vllm(gpus=["0"], gpuMemoryUtilization="auto")], "ollama": {**OLLAMA, "gpus": "all", "vramGiB": 14.5}}
    [text] = issues_of(raw)
    assert text.startswith("llmstack:vllm[0].gpuMemoryUtilization: auto leaves vllm/qwen3 nothing on GPU '0' of host 'gpu-01'")
    assert "reserve 15.5 GiB of 16 GiB" in text


def test_all_expands_to_the_inventory():
    raw = {
        "hosts": inventory(("0", 80), ("1", 80), ("2", 40)),
        "vllm": [vllm(gpus=["1"], gpuMemoryUtilization=0.5)],
        "speaches": {**SPEACHES, "gpus": "all", "vramGiB": 3},
    }
    plan = gpu_plan.plan(validate(raw))
    assert rows(plan) == [
        ("gpu-01", "0", "speaches", 4.0, 76.0),
        ("gpu-01", "1", "speaches", 4.0, 76.0),
        ("gpu-01", "1", "vllm/qwen3", 41.0, 35.0),
        ("gpu-01", "2", "speaches", 4.0, 36.0),
    ]


def test_idle_cards_are_listed():
    plan = gpu_plan.plan(validate({"hosts": inventory(("0", 80), ("1", 24)), "vllm": [vllm(gpus=["0"], gpuMemoryUtilization=0.5)]}))
    assert rows(plan)[-1] == ("gpu-01", "1", None, 0.0, 24.0)


def test_unknown_device_id_lists_the_inventory():
    [text] = issues_of({"hosts": inventory(("0", 80), ("1", 80)), "vllm": [vllm(gpus=["0", "2"])]})
    assert text == (
        "llmstack:vllm[0].gpus: GPU '2' is not in the inventory of host 'gpu-01'. "
        "Fix: use the ids listed under llmstack:hosts.gpu-01.gpus: 0, 1"
    )


def test_all_on_an_empty_inventory():
    [text] = issues_of({"hosts": {"gpu-01": {"gpus": []}}, "vllm": [vllm()]})
    assert "llmstack:vllm[0].gpus: `all` selects no GPU: host 'gpu-01' lists none" in text


def test_host_without_inventory_is_not_checked():
    raw = {"vllm": [vllm(gpus=["0"], gpuMemoryUtilization=0.99)], "ollama": {**OLLAMA, "gpus": "all"}}
    plan = gpu_plan.plan(validate(raw))
    assert plan.issues == [] and plan.checked == {"local": False}
    assert rows(plan) == [("local", "all", "ollama", None, None), ("local", "0", "vllm/qwen3", None, None)]
    assert plan.notes() == ["local: GPU fit not checked (no GPU inventory under llmstack:hosts.local.gpus)"]
    assert "local: GPU fit not checked" in plan.table()


def test_auto_without_inventory_is_an_error_with_a_fix():
    [text] = issues_of({"vllm": [vllm(gpuMemoryUtilization="auto")]})
    assert text.startswith("llmstack:vllm[0].gpuMemoryUtilization: auto needs the GPU inventory of host 'local', which lists none")
    assert 'Fix: list its GPUs under llmstack:hosts.local.gpus (e.g. - {id: "0", memoryGiB: 80}), or write a fraction such as 0.85' in text


def test_gpu_engine_needs_vram_where_the_inventory_is_known():
    [text] = issues_of({"hosts": inventory(("0", 80)), "infinity": {**INFINITY, "gpus": "all"}})
    assert text.startswith("llmstack:infinity.vramGiB: infinity runs on GPUs of host 'gpu-01'")
    assert "Fix: add vramGiB" in text


def test_vram_on_a_cpu_engine_is_an_error():
    [text] = issues_of({"hosts": inventory(("0", 80)), "speaches": {**SPEACHES, "vramGiB": 3}})
    assert text == "llmstack:speaches.vramGiB: vramGiB is set but the service runs on CPU (no gpus). Fix: add gpus: (all or device ids), or remove vramGiB"


def test_two_vllm_servers_may_not_share_a_gpu():
    raw = {"hosts": inventory(("0", 80), ("1", 80)), "vllm": [vllm(gpus=["0", "1"], gpuMemoryUtilization=0.4), vllm("small", gpus=["1"], gpuMemoryUtilization=0.4)]}
    [text] = issues_of(raw)
    assert text.startswith("llmstack:vllm[1].gpus: shares GPU 1 of host 'gpu-01' with vllm/qwen3 (llmstack:vllm[0])")
    raw["vllm"][0]["gpus"] = ["0"]
    assert gpu_plan.plan(validate(raw)).issues == []
    # Without an inventory, two default (`all`) placements overlap too.
    assert issues_of({"vllm": [vllm(), vllm("small")]})[0].startswith("llmstack:vllm[1].gpus: shares GPU all of host 'local'")


def test_check_is_skipped_while_a_section_it_reads_is_invalid():
    texts = issues_of({"hosts": inventory(("0", 80)), "vllm": [vllm(gpus=["0"], gpuMemoryUtilization=0.9)], "ollama": {**OLLAMA, "gpus": "all", "vramGiB": "lots"}})
    assert len(texts) == 1 and texts[0].startswith("llmstack:ollama.vramGiB")


def test_the_program_refuses_an_over_committed_card_before_any_resource():
    with pytest.raises(pulumi.RunError) as stop:
        run_program(design_stack(0.9))
    assert "is over-committed" in str(stop.value) and "0.76 or less" in str(stop.value)


def _render(tmp_path: Path, raw: dict, fmt: str = "json") -> tuple[int, str, str]:
    path = tmp_path / "Pulumi.test.yaml"
    path.write_text(yaml.safe_dump({"config": {f"llmstack:{k}": v for k, v in raw.items()}}))
    out, err = io.StringIO(), io.StringIO()
    code = main(["render", str(path), "--format", fmt], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_render_shows_the_auto_value_in_the_command_and_the_table(tmp_path):
    code, out, err = _render(tmp_path, design_stack("auto"))
    assert code == 0, err
    document = json.loads(out)
    [container] = [r for r in document["resources"] if r["type"] == CONTAINER and r["name"] == "qwen3"]
    command = container["inputs"]["command"]
    assert command[command.index("--gpu-memory-utilization") + 1] == "0.76"
    assert document["gpuPlan"]["checked"] == {"gpu-01": True}
    assert document["gpuPlan"]["vllmGpuMemoryUtilization"] == {"qwen3": 0.76}
    assert document["gpuPlan"]["rows"][-1] == {"host": "gpu-01", "gpu": "0", "service": "vllm/qwen3", "reservedGiB": 61.8, "freeGiB": 0.2}
    lines = err.splitlines()
    assert lines[0].startswith("GPU plan")
    assert lines[1].split() == ["host", "gpu", "service", "reserved", "GiB", "free", "GiB"]
    assert lines[-1].split() == ["gpu-01", "0", "vllm/qwen3", "61.8", "0.2"]
    code, out_yaml, _ = _render(tmp_path, design_stack("auto"), "yaml")
    assert code == 0 and yaml.safe_load(out_yaml) == document


def test_render_says_when_the_fit_was_not_checked(tmp_path):
    code, out, err = _render(tmp_path, {"vllm": [vllm(gpus=["0"])]})
    assert code == 0
    assert json.loads(out)["gpuPlan"]["checked"] == {"local": False}
    assert "local: GPU fit not checked" in err


def test_check_notes_an_unchecked_host(tmp_path):
    path = tmp_path / "Pulumi.test.yaml"
    path.write_text(yaml.safe_dump({"config": {"llmstack:vllm": [vllm(gpus=["0"])]}}))
    out = io.StringIO()
    assert main(["check", str(path)], out=out, err=out) == 0
    assert "local: GPU fit not checked" in out.getvalue()


# A program beside the real one: an engine that shares vLLM's GPUs is deployed first, then the real
# vLLM section with `start_after` from the plan, so the ordering holds whatever engines program.py deploys.
def test_vllm_container_starts_after_the_engines_sharing_its_gpus():
    raw = {
        "hosts": inventory(("0", 80), ("1", 80)),
        "vllm": [vllm(gpus=["0"], gpuMemoryUtilization="auto"), vllm("small", gpus=["1"], gpuMemoryUtilization=0.5)],
        "ollama": {**OLLAMA, "gpus": "all", "vramGiB": 8},  # shares 0 (via all) and 1
        "infinity": {**INFINITY, "gpus": ["1"], "vramGiB": 4},  # shares 1 only
        "speaches": {**SPEACHES},  # CPU: no ordering
    }
    plan = run_program(raw)
    urn = {r.name: r.urn for r in plan.of_type(CONTAINER)}
    containers = {r.name: r for r in plan.of_type(CONTAINER)}
    assert set(containers["qwen3"].depends_on) >= {urn["ollama"]}
    assert urn["infinity"] not in containers["qwen3"].depends_on and urn["speaches"] not in containers["qwen3"].depends_on
    assert set(containers["small"].depends_on) >= {urn["ollama"], urn["infinity"]}
    assert urn["speaches"] not in containers["small"].depends_on
    command = containers["qwen3"].inputs["command"]
    assert command[command.index("--gpu-memory-utilization") + 1] == "0.87"  # (80 - 9 - 1) / 80 = 0.875


def test_start_after_without_inventory_treats_all_as_overlapping():
    checked = check_stack({"vllm": [vllm(gpus=["0"]), vllm("cpu-side", gpus=["1"])], "ollama": {**OLLAMA, "gpus": "all"}, "infinity": {**INFINITY, "gpus": ["1"]}, "speaches": SPEACHES})

    class Server:  # only the container matters to the start order
        def __init__(self, container: str) -> None:
            self.container = container

    context = DeployContext(checked.config, {"local": Site("local", None, None, "localhost")}, checked.gpu_plan)  # type: ignore[arg-type]
    placed = {placement.spec.key: placement for placement in placements(checked.config)}
    context.placed += [
        PlacedEngine(placed["ollama"], EngineDeployment(Server("ollama-c"))),  # type: ignore[arg-type]
        PlacedEngine(placed["infinity"], EngineDeployment(Server("infinity-c"))),  # type: ignore[arg-type]
        PlacedEngine(placed["speaches"], EngineDeployment(Server("speaches-c"))),  # type: ignore[arg-type]
    ]
    qwen3, cpu_side = checked.config.vllm
    assert context.start_after(qwen3) == ["ollama-c"]
    assert context.start_after(cpu_side) == ["ollama-c", "infinity-c"]


def test_the_real_program_orders_vllm_after_its_gpu_neighbours():
    plan = run_program(design_stack("auto"))
    containers = {r.name: r for r in plan.of_type(CONTAINER)}
    engines = [name for name in ("ollama", "infinity", "speaches") if name in containers]
    if not engines:
        pytest.skip("program.py deploys no Ollama/Infinity/Speaches section yet")
    for name in engines:
        assert containers[name].urn in containers["qwen3"].depends_on, name
