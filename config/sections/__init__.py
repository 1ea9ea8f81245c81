"""One module per engine section of the stack file; each registers itself (config.registry) when imported.

A section module declares its pydantic model, its checks and a `deploy(block, context)` that builds the
engine component on its site; the registry finds every module in this package."""

from typing import Any

from ..schema import Engine


def image_and_gpus(block: Engine) -> dict[str, Any]:
    """The `gpus` and `image` args of a component, where the block sets them."""
    found: dict[str, Any] = {}
    if block.gpus:
        found["gpus"] = list(block.gpus)
    if block.image:
        found["image"] = block.image
    return found
