"""Fixtures of the contract test: stacks rendered by the program, deployed as processes on loopback.

Deployments are module-scoped (LiteLLM takes several seconds to start); the behaviours the tests
measure (fault timings, status codes) are printed in a summary section at the end of the run."""

from __future__ import annotations

from typing import Any

import pytest

from tests.contract import harness
from tests.standins.gateway import litellm_executable


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if harness.OBSERVED:
        terminalreporter.section("contract: observed behaviour")
        for line in harness.OBSERVED:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def litellm_installed() -> str:
    """The `litellm` proxy script (PyPI litellm[proxy]); the contract tests skip without it."""
    try:
        return litellm_executable()
    except FileNotFoundError as error:
        pytest.skip(str(error))
