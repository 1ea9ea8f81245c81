"""vLLM `extraArgs` read as `vllm serve` reads them: spellings that would slip past the managed-flag, removed-flag and secret checks are refused."""

from collections.abc import Iterable

from components import vllm as vllm_facts
from components import vllm_cli

from .errors import ConfigIssue, key_path

# Flags whose value is a credential; in extraArgs they would sit in plaintext in the container's command.
SECRET_FLAGS = ("--api-key", "--hf-token")
# `--model` is moved in front of the command by vLLM's parser, replacing the entry's `model`.
POSITIONAL_FLAGS = ("--model",)
CONTROLLED_FLAGS = (*vllm_facts.MANAGED_FLAGS, *vllm_facts.REMOVED_FLAGS, *SECRET_FLAGS, *POSITIONAL_FLAGS)


def canonical(args: Iterable[str]) -> list[str]:
    """The long option each flag of `args` names for vLLM (values left out), in order."""
    return [name for name in (vllm_cli.flag_name(a) for a in args) if name is not None]


def extra_args_issues(index: int, args: list[str]) -> Iterable[ConfigIssue]:
    """What in one entry's extraArgs vLLM would read otherwise than the checks do, or would read from elsewhere."""
    where = key_path(("vllm", index, "extraArgs"))
    for arg in args:
        name = vllm_cli.flag_name(arg)
        if name is None:
            continue
        if name == vllm_cli.CONFIG_FILE_FLAG:
            yield ConfigIssue(
                where,
                f"{arg.split('=', 1)[0]} makes vLLM read more flags from a YAML file, which no check here sees",
                "write those flags in extraArgs (or the typed keys) instead",
            )
        elif name in POSITIONAL_FLAGS:
            yield ConfigIssue(where, f"{arg.split('=', 1)[0]} replaces the entry's model", "set `model:` instead")
        elif not name.startswith("--"):
            yield ConfigIssue(
                where,
                f"{name} is a short option this check cannot map to vLLM's long option",
                f"write the long --option form (known short forms: {', '.join(sorted(vllm_cli.SHORT_ALIASES))})",
            )
        else:
            expanded = vllm_cli.abbreviated(name, CONTROLLED_FLAGS)
            if expanded:
                yield ConfigIssue(
                    where,
                    f"vLLM reads {name} as an abbreviation of {' or '.join(expanded)}",
                    "write a flag in full; managed, removed and secret flags are not accepted in extraArgs",
                )
