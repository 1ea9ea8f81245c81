"""Fixtures of the real-engine tests: the engines' own virtual environments (.ci/run creates them).

Each engine runs from PyPI at the release of its pinned image, in a venv of its own (their
dependencies clash with the project's and with each other). Without the venv the tests skip,
except where LLMSTACK_ENGINES_REQUIRED=1 (CI), where a missing venv is a failure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import ROOT

VENVS = {"vllm": ROOT / ".venv-vllm", "infinity": ROOT / ".venv-infinity"}
REQUIREMENTS = {name: ROOT / "tests" / "engines" / f"requirements-{name}.txt" for name in VENVS}


def engine_python(name: str) -> Path:
    python = VENVS[name] / "bin" / "python"
    if python.exists():
        return python
    why = (
        f"{VENVS[name].name} is missing: python3 -m venv {VENVS[name].name} && "
        f"{VENVS[name].name}/bin/pip install --no-deps -r {REQUIREMENTS[name].relative_to(ROOT)} (or bash .ci/run)"
    )
    if os.environ.get("LLMSTACK_ENGINES_REQUIRED") == "1":
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture(scope="session")
def vllm_python() -> Path:
    return engine_python("vllm")


@pytest.fixture(scope="session")
def infinity_python() -> Path:
    return engine_python("infinity")


@pytest.fixture(scope="session")
def litellm_installed() -> str:
    """The `litellm` proxy script (PyPI litellm[proxy], a test dependency of the project's own venv)."""
    from tests.standins.gateway import litellm_executable

    try:
        return litellm_executable()
    except FileNotFoundError as error:
        pytest.skip(str(error))
