"""Runs inside the vLLM venv (.venv-vllm): vLLM's own `vllm serve` checks on container commands, no GPU.

Reads `{"cases": [{"id": ..., "argv": [...]}]}` on stdin (argv: the container's command, i.e. what the
image's `vllm serve` entrypoint gets) and prints one JSON result per case on stdout. For each case,
as `vllm serve` does before it loads weights:
1. the `serve` subcommand's own parser (vllm.entrypoints.cli.serve.ServeSubcommand.subparser_init);
2. its validation (ServeSubcommand.validate) and the API server's (launcher.validate_api_server_args:
   registered tool-call and reasoning parsers);
3. EngineArgs.from_cli_args(...).create_model_config(): the model's config.json (from the HF cache
   the caller laid out; HF_HUB_OFFLINE=1) with --hf-overrides applied, the max length derived and
   checked, the quantization read;
4. the rotary embedding the model's attention layers build (get_rope with the config's
   max_position_embeddings and rope_parameters, as vllm/model_executor/models/qwen3*.py do).

The platform: vLLM picks one at import (CUDA through NVML, ROCm, TPU, XPU, else CPU only when asked).
With no driver here it finds none, and even the parser cannot be built ("Failed to infer device
type"). The caller sets VLLM_TARGET_DEVICE=cpu, vLLM's own switch to its CPU platform: that replaces
the CUDA platform's device checks (compute capability, FP8 kernels, memory), which only a GPU host
exercises. Nothing in vLLM is patched.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import traceback
from typing import Any


def _rope(model_config: Any) -> dict[str, Any]:
    from vllm.config import VllmConfig, set_current_vllm_config
    from vllm.model_executor.layers.rotary_embedding import get_rope

    hf = model_config.hf_text_config
    parameters = dict(getattr(hf, "rope_parameters", None) or {})
    with set_current_vllm_config(VllmConfig(model_config=model_config)):
        rope = get_rope(model_config.get_head_size(), max_position=hf.max_position_embeddings, rope_parameters=parameters)
    return {
        "class": type(rope).__name__,
        "base": float(rope.base),
        "type": parameters.get("rope_type", "default"),
        "factor": getattr(rope, "scaling_factor", None),
        "original_max_position_embeddings": parameters.get("original_max_position_embeddings"),
        "max_position": int(rope.max_position_embeddings),
    }


def check(argv: list[str]) -> dict[str, Any]:
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.entrypoints.cli.serve import ServeSubcommand
    from vllm.entrypoints.launchers.launcher import validate_api_server_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    result: dict[str, Any] = {"ok": False, "stage": "parse"}
    parser = FlexibleArgumentParser(prog="vllm")
    subparsers = parser.add_subparsers(required=False, dest="subparser")
    serve = ServeSubcommand()
    serve.subparser_init(subparsers)
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            args = parser.parse_args(["serve", *argv])
    except SystemExit as stop:
        result["error"] = errors.getvalue().strip().splitlines()[-1:] or [f"exit {stop.code}"]
        result["error"] = result["error"][0]
        return result
    try:
        result["stage"] = "validate"
        serve.validate(args)
        validate_api_server_args(args)
        result["stage"] = "model_config"
        args.model = args.model_tag or args.model  # what ServeSubcommand.cmd does first
        model_config = AsyncEngineArgs.from_cli_args(args).create_model_config()
        reasoning = getattr(args, "reasoning_parser", None)
        if reasoning:
            # The engine's structured-output manager looks the parser up at start
            # (vllm/v1/structured_output/__init__.py); the API server's check above does not see it.
            from vllm.reasoning import ReasoningParserManager

            result["stage"] = "reasoning_parser"
            ReasoningParserManager.get_reasoning_parser(reasoning)
        result["stage"] = "rope"
        result["rope"] = _rope(model_config)
    except Exception as error:  # vLLM's own refusal, reported to the test
        result["error"] = f"{type(error).__name__}: {error}"
        result["traceback"] = traceback.format_exc(limit=3)
        return result
    result.update(
        ok=True,
        stage="done",
        model=model_config.model,
        served_model_name=model_config.served_model_name,
        max_model_len=model_config.max_model_len,
        max_position_embeddings=model_config.hf_text_config.max_position_embeddings,
        quantization=model_config.quantization,
        port=args.port,
        reasoning_parser=reasoning,
        tool_call_parser=args.tool_call_parser,
        enable_auto_tool_choice=bool(args.enable_auto_tool_choice),
        gpu_memory_utilization=args.gpu_memory_utilization,
        tensor_parallel_size=args.tensor_parallel_size,
    )
    return result


def main() -> int:
    request = json.load(sys.stdin)
    results = {}
    for case in request["cases"]:
        results[case["id"]] = check(list(case["argv"]))
    sys.stdout.write("\n" + json.dumps(results) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
