"""How `vllm serve` reads its arguments (vLLM's FlexibleArgumentParser), so a flag is recognised in every spelling vLLM accepts."""

import re
from typing import Optional

# Facts from vLLM 0.31.0's own source (the PyPI wheel: vllm/utils/argparse_utils.py FlexibleArgumentParser,
# vllm/engine/arg_utils.py and vllm/entrypoints/launchers/cli_args.py option aliases, and
# vllm/entrypoints/cli/serve.py, whose `serve` subparser keeps argparse's abbreviations):
# - in `--name...`, underscores up to the first `.` read as dashes (`--max_model_len`);
# - `--name=value` is `--name value`;
# - `--json-arg.key value` (and `--json-arg.key+ v`) is merged into `--json-arg '{"key": ...}'`;
# - `-O3`, `-O=3`, `-O 3` are `--optimization-level 3`;
# - `--config FILE` reads a YAML file of further flags;
# - a unique prefix of a long option (`--max-model`) is that option.
SHORT_ALIASES = {
    "-q": "--quantization",
    "-tp": "--tensor-parallel-size",
    "-pp": "--pipeline-parallel-size",
    "-dp": "--data-parallel-size",
    "-dpn": "--data-parallel-rank",
    "-dpr": "--data-parallel-start-rank",
    "-dpl": "--data-parallel-size-local",
    "-dpa": "--data-parallel-address",
    "-dpp": "--data-parallel-rpc-port",
    "-dpb": "--data-parallel-backend",
    "-dpe": "--data-parallel-external-lb",
    "-dph": "--data-parallel-hybrid-lb",
    "-dpm": "--data-parallel-multi-port-external-lb",
    "-dcp": "--decode-context-parallel-size",
    "-pcp": "--prefill-context-parallel-size",
    "-ep": "--enable-expert-parallel",
    "-n": "--nnodes",
    "-r": "--node-rank",
    "-ac": "--attention-config",
    "-cc": "--compilation-config",
    "-dc": "--diffusion-config",
    "-sc": "--speculative-config",
    "-asc": "--api-server-count",
    "-O": "--optimization-level",
}
CONFIG_FILE_FLAG = "--config"
_NEGATIVE_NUMBER = re.compile(r"^-\d+(\.\d*)?$|^-\.\d+$")


def is_option(arg: str) -> bool:
    """True when vLLM reads `arg` as an option rather than a value (`-1` is a value)."""
    return arg.startswith("-") and not _NEGATIVE_NUMBER.match(arg)


def flag_name(arg: str) -> Optional[str]:
    """The long option `arg` names as vLLM reads it (`--max_model_len=8` -> `--max-model-len`), or None for a value.

    A short option not in SHORT_ALIASES is returned as written."""
    if not is_option(arg):
        return None
    if arg.startswith("--"):
        name = arg.split("=", 1)[0]
        name = name.split(".", 1)[0].rstrip("+")
        return "--" + name[2:].replace("_", "-")
    if arg.startswith("-O"):
        return SHORT_ALIASES["-O"]
    name = arg.split("=", 1)[0]
    return SHORT_ALIASES.get(name, name)


def abbreviated(name: str, options: tuple[str, ...]) -> list[str]:
    """The options among `options` that `name` abbreviates (argparse expands a unique prefix, fails on several)."""
    if not name.startswith("--") or name in options:
        return []
    return [option for option in options if option.startswith(name)]
