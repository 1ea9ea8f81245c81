"""`python -m config check|render|diff|smoke`: validate a stack file, print its plan or a change's blast radius, smoke-test a gateway."""

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional, TextIO

import yaml

from . import monitoring, registry, webui
from .deployment import name_prefix_of
from .edge import edge_domain, edge_url
from .errors import StackConfigError
from .plan import Plan, RecordedResource, masked, masked_envs, reveal, run_program
from .schema import StackConfig, resolve_host
from .sites import host_of_provider
from .source import from_stack_file
from .placement import host_summary
from .relay import relay_hosts
from .validation import CheckedStack, check_stack

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
LITELLM_CONTAINER_TYPE = "docker:index/container:Container"


def summary(path: Path, stack: StackConfig) -> str:
    """One line: hosts, engines, model counts, where the gateway is published and how Docker names are scoped."""
    prefix = name_prefix_of(stack, stack_name(path))
    names = f"Docker names prefixed {prefix + '-'!r}" if prefix else "Docker names not prefixed"
    published = f"gateway published on {stack.gateway.bind}:{stack.gateway.port}"
    if stack.edge is not None:
        site_address = stack.hosts[resolve_host(stack, stack.gateway.host)].client_address()
        domain = edge_domain(stack.edge, site_address)
        replicas = stack.gateway.replicas
        published = (
            f"gateway ({replicas} replica{'s' if replicas > 1 else ''}) published through the edge at "
            f"{edge_url(stack.edge, domain)} (tls {stack.edge.tls}, bound to {stack.edge.bind})"
        )
    engines = []
    for spec in registry.sections():
        blocks = spec.blocks(stack)
        if blocks:
            engines.append(f"{spec.key} x{len(blocks)}" if spec.many else spec.key)
    line = (
        f"{path}: ok: {len(stack.hosts)} host(s) ({', '.join(sorted(stack.hosts))}), "
        f"engines: {', '.join(engines) or 'none'}, {len(registry.model_locations(stack))} model(s), "
        f"{published}, {names}, {monitoring.summary(stack)}"
    )
    # Where each engine and replica runs, once there is a choice: several hosts, or replicas.
    if len(stack.hosts) > 1 or any(block.replicas for _, _, block in registry.blocks(stack)):
        line += "\nengines per host:\n" + "\n".join(host_summary(stack, relay_hosts(stack)))
    return line


def litellm_config(plan: Plan) -> dict[str, Any]:
    """The LiteLLM config file the gateway container gets, parsed."""
    for resource in plan.of_type(LITELLM_CONTAINER_TYPE):
        for upload in reveal(resource.inputs).get("uploads") or []:
            if upload.get("file") == "/app/config.yaml":
                return yaml.safe_load(upload["content"])
    return {}


def shown_inputs(resource: RecordedResource) -> dict[str, Any]:
    """A resource's inputs as `config render` prints them: only secret values masked, a container's envs item by item."""
    inputs = resource.sent or resource.inputs
    shown = {name: masked(value) for name, value in inputs.items()}
    if resource.type == LITELLM_CONTAINER_TYPE and "envs" in inputs:
        shown["envs"] = masked_envs(inputs["envs"])
    return shown


def resource_hosts(plan: Plan) -> dict[str, Optional[str]]:
    """URN -> the name under llmstack:hosts of the host each resource is created on (its Docker provider's), or belongs
    to (a component's, its key's, a model pull's: the host of the component it is part of); None for what has no host
    (the stack CA)."""
    hosts: dict[str, Optional[str]] = {}
    for r in plan.resources:
        hosts[r.urn] = host_of_provider(r.provider) or (host_of_provider(r.name) if r.type == "pulumi:providers:docker" else None)
    # A component is on the host of its Docker resources; what has no provider of its own is on its component's.
    for r in plan.resources:
        if hosts[r.urn] is not None and r.parent in hosts and hosts[r.parent] is None:
            hosts[r.parent] = hosts[r.urn]
    for r in plan.resources:
        parent = r.parent
        while hosts[r.urn] is None and parent in hosts:
            hosts[r.urn] = hosts[parent]
            parent = next((p.parent for p in plan.resources if p.urn == parent), "")
    return hosts


def plan_document(plan: Plan) -> dict[str, Any]:
    """The printable plan: resources (each with the host it goes on; each secret value shown as `[secret]`, e.g.
    `NAME=[secret]` in a list of envs), the LiteLLM config and the stack outputs."""
    resources = sorted(plan.resources, key=lambda r: (r.type, r.name, r.urn))
    hosts = resource_hosts(plan)
    return {
        "resources": [
            {"type": r.type, "name": r.name, "host": hosts.get(r.urn), "inputs": shown_inputs(r)} for r in resources
        ],
        "litellmConfig": litellm_config(plan),
        "outputs": masked(plan.outputs),
    }


def load(path: Path) -> tuple[dict[str, Any], CheckedStack]:
    raw = from_stack_file(path)
    return raw, check_stack(raw)


def stack_name(path: Path) -> str:
    """`prod` for Pulumi.prod.yaml."""
    parts = path.name.split(".")
    return parts[1] if len(parts) == 3 and parts[0] == "Pulumi" else path.stem


def check(path: Path, out: TextIO) -> int:
    _, checked = load(path)
    webui_line = webui.summary(checked.config)
    print("; ".join([summary(path, checked.config), *checked.gpu_plan.notes(), *([webui_line] if webui_line else [])]), file=out)
    return EXIT_OK


def render(path: Path, fmt: str, out: TextIO, err: TextIO = sys.stderr) -> int:
    raw, checked = load(path)
    document = plan_document(run_program(raw, stack=stack_name(path)))
    gpus = checked.gpu_plan
    document["gpuPlan"] = gpus.document()
    # The table is for people, on the diagnostic stream: `out` stays one parseable document.
    print(gpus.table(), file=err)
    if fmt == "json":
        out.write(json.dumps(document, indent=2, sort_keys=True) + "\n")
    else:
        out.write(yaml.safe_dump(document, sort_keys=True, default_flow_style=False))
    return EXIT_OK


def diff(before: Path, after: Path, out: TextIO) -> int:
    from .plan_diff import diff_plans, effective

    plans = [run_program(load(path)[0], stack=stack_name(path)) for path in (before, after)]
    changes = effective(diff_plans(*plans))
    for change in changes:
        print(change, file=out)
    print(f"{len(changes)} change(s)", file=out)
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m config", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)
    check_cmd = commands.add_parser("check", help="validate a stack file")
    check_cmd.add_argument("stack_file", type=Path)
    render_cmd = commands.add_parser("render", help="print the plan of a stack file (runs the program under mocks)")
    render_cmd.add_argument("stack_file", type=Path)
    render_cmd.add_argument("--format", choices=("json", "yaml"), default="json")
    diff_cmd = commands.add_parser("diff", help="what going from one stack file to another creates, replaces, updates, deletes")
    diff_cmd.add_argument("before", type=Path)
    diff_cmd.add_argument("after", type=Path)
    commands.add_parser("smoke", help="call every route of a deployed gateway", add_help=False)
    return root


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["smoke"]:
        from . import smoke

        return smoke.main(args_list[1:])
    try:
        args = parser().parse_args(args_list)
    except SystemExit as stop:
        return EXIT_USAGE if stop.code else EXIT_OK
    try:
        if args.command == "check":
            return check(args.stack_file, out)
        if args.command == "diff":
            return diff(args.before, args.after, out)
        return render(args.stack_file, args.format, out, err)
    except StackConfigError as error:
        print(error.report(), file=err)
        return EXIT_USAGE
