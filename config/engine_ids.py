"""Model ids, tags, parser names and image references in each engine's own grammar: none can turn into a flag, a path or a URL part."""

import re
from collections.abc import Iterable
from typing import Any, Optional

from components.model_pull import pull_resource_names

from . import registry
from .errors import ConfigIssue, key_path

# Hugging Face repo ids (huggingface_hub's validate_repo_id): `[org/]name`, letters, digits, `-_.`,
# no `--` or `..`, not starting or ending with `-` or `.`, at most 96 characters.
_HF_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?"
HF_REPO_ID = re.compile(rf"^(?:{_HF_PART}/)?{_HF_PART}$")
HF_MAX_LENGTH = 96
# A model directory inside the container (vLLM and Infinity read a local path as the model).
LOCAL_PATH = re.compile(r"^(/[A-Za-z0-9_.+-]+)+/?$")
# Ollama model names (ollama's types/model/name.go): `[host[:port]/][namespace/]model[:tag]`.
_OLLAMA_PART = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}"
OLLAMA_TAG = re.compile(
    rf"^(?:[A-Za-z0-9][A-Za-z0-9.-]{{0,349}}(?::[0-9]{{1,5}})?/)?(?:{_OLLAMA_PART}/)?{_OLLAMA_PART}(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,79}})?$"
)
# Docker image references (distribution/reference's grammar): `[domain[:port]/]path[:tag][@digest]`.
_IMAGE_DOMAIN = r"(?:localhost|[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)(?::[0-9]+)?"
_IMAGE_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_REFERENCE = re.compile(
    rf"^(?:{_IMAGE_DOMAIN}/)?{_IMAGE_COMPONENT}(?:/{_IMAGE_COMPONENT})*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)
IMAGE_MAX_LENGTH = 255
# vLLM's reasoning and tool-call parser names (`qwen3`, `deepseek_r1`, `granite-20b-fc`).
PARSER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")


def _control(text: str) -> bool:
    return any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in text)


def hf_model_problem(model: str, local_path: bool) -> Optional[str]:
    """Why `model` is not a Hugging Face repo id (or, when allowed, an absolute path), or None."""
    if HF_REPO_ID.match(model) and len(model) <= HF_MAX_LENGTH and "--" not in model and ".." not in model:
        return None
    if local_path and LOCAL_PATH.match(model) and ".." not in model.split("/"):
        return None
    return "is not a Hugging Face repo id (org/name)" + (" or an absolute path in the container" if local_path else "")


def ollama_tag_problem(tag: str) -> Optional[str]:
    return None if OLLAMA_TAG.match(tag) else "is not an Ollama model name ([registry/][namespace/]name[:tag])"


def image_problem(image: str) -> Optional[str]:
    if IMAGE_REFERENCE.match(image) and len(image) <= IMAGE_MAX_LENGTH:
        return None
    return "is not a Docker image reference ([registry/]repository[:tag][@sha256:digest])"


def _shown(text: str) -> str:
    """The value for a message: quoted, control characters escaped, long values cut."""
    return repr(text if len(text) <= 80 else text[:77] + "...")


def model_issue(loc: tuple, model: str, problem: Optional[str], fix: str) -> Iterable[ConfigIssue]:
    """The issue of a model id its engine would not read as one (none when `problem` is None)."""
    if problem:
        if model.startswith("-"):
            problem += "; it starts with '-' and would be read as an option"
        yield ConfigIssue(key_path(loc), f"{_shown(model)} {problem}", fix)


HF_FIX = "write the id as the engine's model hub shows it, such as Qwen/Qwen3-30B-A3B-FP8"
OLLAMA_FIX = "write a tag as `ollama pull` takes it, such as qwen2.5vl:7b-q4_K_M"


def parser_issue(loc: tuple, parser: Optional[str]) -> Iterable[ConfigIssue]:
    """A vLLM parser name that is not an identifier (it lands in the command)."""
    if parser is not None and not PARSER_NAME.match(parser):
        yield ConfigIssue(key_path(loc), f"{_shown(parser)} is not a vLLM parser name", "write a registered parser name such as qwen3 or hermes")


def image_issues(stack: Any) -> Iterable[ConfigIssue]:
    """Every image override (engines and gateway) that is not a Docker image reference."""
    images = [((*loc, "image"), block.image) for _, loc, block in registry.blocks(stack)]
    images += [(("gateway", "image"), stack.gateway.image), (("gateway", "postgresImage"), stack.gateway.postgres_image)]
    images += [(("gateway", "redisImage"), stack.gateway.redis_image)]
    for loc, image in images:
        if image is not None and image_problem(image):
            yield ConfigIssue(key_path(loc), f"{_shown(image)} {image_problem(image)}", "write an image such as vllm/vllm-openai:v0.31.0")


def pull_name_issues(component: str, models: list[str], loc: tuple) -> Iterable[ConfigIssue]:
    """Two models whose pull resources would share one Pulumi name (`qwen2.5:0.5b` and `qwen2.5/0.5b`)."""
    first: dict[str, int] = {}
    for i, model in enumerate(models):
        try:
            name = pull_resource_names(component, [model])[model]
        except ValueError:
            continue
        j = first.setdefault(name, i)
        if j != i and models[j] != model:
            yield ConfigIssue(
                key_path((*loc, "models", i, "model")),
                f"{model!r} and {models[j]!r} ({key_path((*loc, 'models', j, 'model'))}) would share one pull resource name",
                "list one of them (they name the same model only if the engine says so)",
            )


def text_issues(raw_stack: Any) -> Iterable[ConfigIssue]:
    """Control characters (NUL, newline, escape...) in any key or value of the stack: no engine reads them as text."""

    def walk(value: Any, loc: tuple) -> Iterable[ConfigIssue]:
        if isinstance(value, str):
            if _control(value):
                yield ConfigIssue(key_path(loc), "holds a control character (NUL, newline, escape, ...)", "remove it")
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and _control(key):
                    yield ConfigIssue(key_path(loc), "a key holds a control character", "remove it")
                else:
                    yield from walk(item, (*loc, key))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                yield from walk(item, (*loc, i))

    yield from walk(raw_stack.model_dump(by_alias=True, exclude={"master_key", "hf_token"}), ())
