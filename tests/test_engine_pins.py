"""Each pinned engine image and the PyPI release the tests run in its place carry the same version.

The image tags live in components/ (one constant each); the PyPI pins in pyproject.toml (LiteLLM,
the contract test) and tests/engines/requirements-*.txt (vLLM, Infinity, the engines tests)."""

import re
from pathlib import Path

from components import infinity, litellm, vllm
from tests.conftest import ROOT


def image_version(image: str) -> str:
    """`0.31.0` from `vllm/vllm-openai:v0.31.0`, `0.0.77` from `michaelf34/infinity:0.0.77-cpu`."""
    tag = image.rsplit(":", 1)[1]
    match = re.fullmatch(r"v?(\d+(?:\.\d+)+)(?:-[\w.]+)?", tag)
    assert match, f"{image}: no version in the tag"
    return match.group(1)


def pinned(text: str, package: str) -> str:
    """The `==` version of `package` (with or without extras) in a requirements or pyproject text."""
    found = re.findall(rf'(?im)^\s*"?{re.escape(package)}(?:\[[^\]]*\])?==([\w.]+)', text)
    assert len(found) == 1, f"{package}: {len(found)} exact pins"
    return found[0]


def requirements(name: str) -> str:
    return (ROOT / "tests" / "engines" / f"requirements-{name}.txt").read_text()


def test_vllm_image_and_pypi_pin_agree():
    assert pinned(requirements("vllm"), "vllm") == image_version(vllm.IMAGE)


def test_infinity_images_and_pypi_pin_agree():
    assert image_version(infinity.GPU_IMAGE) == image_version(infinity.CPU_IMAGE)
    assert pinned(requirements("infinity"), "infinity_emb") == image_version(infinity.GPU_IMAGE)


def test_litellm_image_and_pypi_pin_agree():
    assert pinned((ROOT / "pyproject.toml").read_text(), "litellm") == image_version(litellm.IMAGE)


def test_the_pin_reader_sees_a_mismatch():
    assert pinned("vllm==0.30.1\ntorch==2.13.0\n", "vllm") != image_version(vllm.IMAGE)
    assert image_version("michaelf34/infinity:0.0.77-cpu") == "0.0.77"
