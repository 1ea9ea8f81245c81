"""The checks that refuse values which would run a command, leak a credential or collide on a Docker engine; validation runs them after its own."""

from collections.abc import Callable, Iterable
from typing import Any

from . import credentials, docker_names, engine_ids, registry, ssh_options
from .errors import ConfigIssue


def model_name_issues(stack: Any) -> Iterable[ConfigIssue]:
    return docker_names.model_name_issues(registry.model_locations(stack), registry.reserved_names())


ENGINES = "<engine sections>"
"""In `CHECKS`, stands for every registered engine section."""

# Each check with the top-level keys it reads across sections: skipped while one of them is invalid (see validation).
CHECKS: tuple[tuple[Callable[[Any], Iterable[ConfigIssue]], tuple[str, ...]], ...] = (
    (engine_ids.text_issues, ()),
    (engine_ids.image_issues, ()),
    (credentials.credential_issues, ()),
    (ssh_options.ssh_option_issues, ()),
    (docker_names.network_issues, ()),
    (docker_names.host_issues, ()),
    (model_name_issues, (ENGINES,)),
)
# Each engine section checks its own ids, flags and env (its module's `checks`).
