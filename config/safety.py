"""The checks that refuse values which would run a command, leak a credential or collide on a Docker engine; validation runs them after its own."""

from collections.abc import Callable, Iterable
from typing import Any

from . import credentials, docker_names, engine_env, engine_ids, gpu_ids, ssh_options
from .errors import ConfigIssue


def model_name_issues(stack: Any) -> Iterable[ConfigIssue]:
    from .validation import RESERVED_NAMES, model_locations

    return docker_names.model_name_issues(model_locations(stack), RESERVED_NAMES)


CHECKS: tuple[Callable[[Any], Iterable[ConfigIssue]], ...] = (
    engine_ids.text_issues,
    engine_ids.engine_id_issues,
    credentials.credential_issues,
    ssh_options.ssh_option_issues,
    docker_names.network_issues,
    docker_names.host_issues,
    model_name_issues,
    engine_env.engine_env_issues,
    gpu_ids.tensor_parallel_issues,
)
# Checks that read several sections: skipped while one of them is invalid (see validation).
DEPENDS_ON_SECTIONS = {
    "model_name_issues": ("vllm", "ollama", "infinity", "speaches"),
    "tensor_parallel_issues": ("hosts", "vllm"),
}
