"""Render time of the prod stack and of a synthetic 50-engine stack, against a plain program declaring the same resources.

The plain program declares the recorded resources of the same plan again with the pulumi-docker,
pulumi-random and pulumi-command classes (same types, names and inputs, inputs that come from other
resources wired as Outputs of them; no components, no validation, no config file), under the same
mocks, so the ratio is what llmstack's layer costs on top of declaring the resources by hand.

The floor column declares the same again with one bare ComponentResource per component (children
parented to it): what grouping resources into components costs in the SDK alone.

Run: .venv/bin/python benchmarks/render_speed.py [--repeat N]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import json  # noqa: E402
import re  # noqa: E402

import pulumi  # noqa: E402
import pulumi_command as command  # noqa: E402
import pulumi_docker as docker  # noqa: E402
import pulumi_random as random  # noqa: E402

from config.plan import Plan, is_secret, pulumi_config, reveal, run_program, run_under_mocks  # noqa: E402
from config.source import from_stack_file  # noqa: E402
from config.validation import validate  # noqa: E402

TARGET_RATIO = 1.3


def synthetic_stack(engines: int) -> dict:
    """A stack with `engines` vLLM containers (one model each) and the gateway."""
    return {
        "vllm": [
            {"name": f"model-{i:02d}", "model": f"org/model-{i:02d}", "gpus": [str(i)], "gpuMemoryUtilization": 0.9}
            for i in range(engines)
        ]
    }


# The SDK classes a hand-written program would use, by type token.
CLASSES = {
    "docker:index/container:Container": docker.Container,
    "docker:index/volume:Volume": docker.Volume,
    "docker:index/network:Network": docker.Network,
    "docker:index/remoteImage:RemoteImage": docker.RemoteImage,
    "random:index/randomPassword:RandomPassword": random.RandomPassword,
    "command:local:Command": command.local.Command,
    "pulumi:providers:docker": docker.Provider,
}
# Inputs a hand-written program takes from other resources' outputs (image id, volume and network
# names, passwords in envs, the container a pull is triggered by).
WIRED_INPUTS = ("image", "envs", "volumes", "networksAdvanced", "triggers", "environment")


def _snake(value):
    if isinstance(value, dict) and not is_secret(value):
        return {re.sub(r"(?<!^)(?=[A-Z])", "_", k).lower(): _snake(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_snake(v) for v in value]
    return value


def _declared_value(value):
    return pulumi.Output.secret(reveal(value)) if is_secret(value) else _snake(value)


def replay(plan: Plan, with_components: bool = False) -> None:
    """Declares every recorded resource again with the SDK classes, the same inputs and the same wiring.

    Flat by default; `with_components` also declares each recorded component as a bare
    ComponentResource (same type and name, children parented to it, `register_outputs({})`): the
    floor for a program that groups its resources into components and does nothing else."""
    declared: dict[str, pulumi.Resource] = {}
    components: dict[str, pulumi.ComponentResource] = {}
    if with_components:
        for resource in plan.resources:
            if resource.type.startswith("llmstack:index:"):
                components[resource.urn] = pulumi.ComponentResource(resource.type, resource.name, {}, None)
    for resource in plan.resources:
        if resource.type.startswith("llmstack:index:"):
            continue
        deps = [declared[urn] for urn in resource.depends_on if urn in declared]
        kwargs = {}
        gate = pulumi.Output.all(*[d.urn for d in deps]) if deps else None
        for key, value in resource.inputs.items():
            declared_value = _declared_value(value)
            if gate is not None and key in WIRED_INPUTS:
                declared_value = gate.apply(lambda _, v=declared_value: v)
            kwargs[re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()] = declared_value
        if resource.type == "pulumi:providers:docker" and isinstance(kwargs.get("ssh_opts"), str):
            kwargs["ssh_opts"] = json.loads(kwargs["ssh_opts"])
        parent = components.get(resource.parent)
        if parent is not None:
            kwargs["opts"] = pulumi.ResourceOptions(parent=parent)
        declared[resource.urn] = CLASSES[resource.type](resource.name, **kwargs)
    for component in components.values():
        component.register_outputs({})


def timed(fn, repeat: int) -> float:
    """Median CPU time of `fn` over `repeat` runs, in milliseconds (after one warm-up run).

    The mocks run in this process, so CPU time is the render's cost and is not inflated by other
    work on the machine the way wall time is."""
    fn()
    samples = []
    for _ in range(repeat):
        start = time.process_time()
        fn()
        samples.append((time.process_time() - start) * 1000)
    return statistics.median(samples)


def measure(name: str, raw: dict, repeat: int) -> tuple[str, int, float, float, float]:
    validate(raw)
    plan = run_program(raw, stack="bench")
    config, secret_keys = pulumi_config(raw)
    ours = timed(lambda: run_program(raw, stack="bench"), repeat)
    plain = timed(lambda: run_under_mocks(lambda: replay(plan), config, secret_keys, stack="bench"), repeat)
    floor = timed(lambda: run_under_mocks(lambda: replay(plan, with_components=True), config, secret_keys, stack="bench"), repeat)
    containers = len(plan.of_type("docker:index/container:Container"))
    return name, containers, ours, plain, floor


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    rows = [
        measure("prod (Pulumi.prod.yaml)", from_stack_file(ROOT / "Pulumi.prod.yaml"), args.repeat),
        measure("synthetic, 50 engines", synthetic_stack(50), max(3, args.repeat // 3)),
    ]
    print(
        f"{'stack':26} {'containers':>10} {'llmstack ms':>12} {'plain ms':>9} {'floor ms':>9} "
        f"{'ratio':>6} {'floor ratio':>11} {'x floor':>7}"
    )
    for name, containers, ours, plain, floor in rows:
        print(
            f"{name:26} {containers:10d} {ours:12.1f} {plain:9.1f} {floor:9.1f} "
            f"{ours / plain:6.2f} {floor / plain:11.2f} {ours / floor:7.2f}"
        )
    print("ratio: llmstack / plain; floor: the plain program with one bare ComponentResource per component")
    worst = max(ours / plain for _, _, ours, plain, _ in rows)
    print(f"target ratio < {TARGET_RATIO}: {'met' if worst < TARGET_RATIO else 'NOT met'} (worst {worst:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
