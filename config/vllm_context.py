"""Checks of a vLLM entry's context length against its `hfOverrides`, as vLLM 0.31 reads them.

What vLLM 0.31.0 does with an override (seen with its own ModelConfig and rotary embedding):
- `--hf-overrides` replaces the model's whole `rope_parameters` (or legacy `rope_scaling`) dict, so
  an override without `rope_theta` silently resets the rotary base to 10000;
- a yarn config counts as already scaled: the longest context is `max_position_embeddings`, and
  `--max-model-len` above it stops the server at start;
- a yarn rope without `factor` or `original_max_position_embeddings` fails when the model loads.
"""

from collections.abc import Iterable, Mapping
from typing import Any, Optional

from .errors import ConfigIssue, key_path

# The keys under which a config.json carries its rope: transformers 5 names it rope_parameters.
ROPE_KEYS = ("rope_parameters", "rope_scaling")
YARN = "yarn"
# An example of the whole override, for Qwen3 (config.json: 40960 positions, rope_theta 1e6).
QWEN3_YARN_EXAMPLE = (
    "{max_position_embeddings: 131072, rope_parameters: {rope_type: yarn, factor: 4.0, "
    "original_max_position_embeddings: 32768, rope_theta: 1000000.0}}"
)


def _number(value: Any) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _yarn_length(rope: Mapping[str, Any]) -> Optional[int]:
    """factor x original_max_position_embeddings: the context a yarn rope is scaled to, when both are numbers."""
    factor, original = _number(rope.get("factor")), _number(rope.get("original_max_position_embeddings"))
    return int(factor * original) if factor is not None and original is not None else None


def entry_issues(loc: tuple, overrides: Mapping[str, Any], max_model_len: Optional[int]) -> Iterable[ConfigIssue]:
    """The mistakes in the hfOverrides and maxModelLen of the vLLM entry at `loc` (("vllm", 0))."""
    base = (*loc, "hfOverrides")
    positions = overrides.get("max_position_embeddings")
    if "max_position_embeddings" in overrides and (
        isinstance(positions, bool) or not isinstance(positions, int) or positions < 1
    ):
        yield ConfigIssue(
            key_path((*base, "max_position_embeddings")), f"{positions!r} is not a number of tokens", "write a whole number such as 131072"
        )
        positions = None
    for key in ROPE_KEYS:
        if key not in overrides:
            continue
        rope = overrides[key]
        if not isinstance(rope, Mapping):
            yield ConfigIssue(key_path((*base, key)), f"{rope!r} is not a mapping", f"write a mapping, e.g. hfOverrides: {QWEN3_YARN_EXAMPLE}")
            continue
        if "rope_theta" not in rope:
            yield ConfigIssue(
                key_path((*base, key)),
                f"the override replaces the model's whole {key}, so without rope_theta vLLM uses a rotary base of 10000 "
                "and the model silently degrades",
                "add rope_theta with the value in the model's config.json (1000000.0 for Qwen3)",
            )
        if str(rope.get("rope_type", rope.get("type", ""))) != YARN:
            continue
        missing = [k for k in ("factor", "original_max_position_embeddings") if _number(rope.get(k)) is None]
        if missing:
            yield ConfigIssue(
                key_path((*base, key)),
                f"a yarn rope needs {' and '.join(missing)} (vLLM fails when it loads the model)",
                "add factor (e.g. 4.0) and original_max_position_embeddings (the model's native length, e.g. 32768)",
            )
        scaled = _yarn_length(rope)
        wanted = scaled or 131072
        if "max_position_embeddings" not in overrides:
            yield ConfigIssue(
                key_path(base),
                "a yarn override without max_position_embeddings: vLLM 0.31 treats a yarn config as already scaled, "
                "so the context stays the model's own length and a longer maxModelLen stops vLLM at start",
                f"add max_position_embeddings: {wanted} (factor x original_max_position_embeddings)",
            )
        elif positions is not None and scaled is not None and positions > scaled:
            yield ConfigIssue(
                key_path((*base, "max_position_embeddings")),
                f"{positions} is beyond what the yarn rope covers (factor x original_max_position_embeddings = {scaled})",
                f"set it to {scaled} or raise factor",
            )
        if max_model_len is not None and scaled is not None and max_model_len > scaled:
            yield ConfigIssue(
                key_path((*loc, "maxModelLen")),
                f"{max_model_len} is beyond what the yarn rope in hfOverrides.{key} covers ({scaled} tokens)",
                f"lower maxModelLen to {scaled} or raise hfOverrides.{key}.factor",
            )
    if positions is not None and max_model_len is not None and max_model_len > positions:
        yield ConfigIssue(
            key_path((*loc, "maxModelLen")),
            f"{max_model_len} is above hfOverrides.max_position_embeddings ({positions}); vLLM refuses to start",
            f"lower maxModelLen to {positions} or raise hfOverrides.max_position_embeddings",
        )


def context_issues(entry: Any, loc: tuple, stack: Any) -> Iterable[ConfigIssue]:
    """The hfOverrides/maxModelLen mistakes of one `llmstack:vllm` entry (a check of config/sections/vllm.py)."""
    if entry.hf_overrides:
        yield from entry_issues(loc, entry.hf_overrides, entry.max_model_len)
