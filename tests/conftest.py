"""Shared fixtures: the repository on sys.path and plans of stack files rendered under Pulumi's mocks."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from config.plan import Plan, run_program  # noqa: E402
from config.source import from_stack_file  # noqa: E402

STACK_FILES = sorted(ROOT.glob("Pulumi.*.yaml")) + sorted((ROOT / "examples").glob("Pulumi.*.yaml"))


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


def plan_of_file(path: Path) -> Plan:
    """The plan of a stack file in the repository."""
    stack = path.name.split(".")[1]
    return run_program(from_stack_file(path), stack=stack)


def container(plan: Plan, name: str):
    """The recorded docker Container resource with this logical name."""
    found = [r for r in plan.of_type("docker:index/container:Container") if r.name == name]
    assert len(found) == 1, f"{len(found)} containers named {name}"
    return found[0]


def envs_of(resource) -> dict[str, str]:
    """A recorded container's envs as a real deployment gets them (secrets revealed)."""
    from config.plan import reveal

    return dict(entry.split("=", 1) for entry in reveal(resource.inputs.get("envs") or []))


def pulls(plan: Plan, component: str):
    """The model pull commands of an engine component (`ollama`, `speaches`), by resource name."""
    return sorted((r for r in plan.of_type("command:local:Command") if r.name.startswith(f"{component}-pull-")), key=lambda r: r.name)


def gateway_config(plan: Plan) -> dict:
    """The LiteLLM config file the gateway container gets, parsed."""
    from config.cli import litellm_config

    return litellm_config(plan)
def pytest_terminal_summary(terminalreporter) -> None:
    """How many bad stack files were checked, when tests/test_bad_stacks.py ran."""
    bad_stacks = sys.modules.get("tests.test_bad_stacks")
    if bad_stacks is not None and bad_stacks.CHECKED:
        terminalreporter.write_line(
            f"bad stacks: {len(bad_stacks.CHECKED)} of {len(bad_stacks.CASES)} files in tests/bad_stacks refused by `config check` with the expected key and fix"
        )
