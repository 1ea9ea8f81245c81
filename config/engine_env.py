"""Engine env settings the program relies on: an env that would move an engine off its port or out of its retained volume is refused."""

from collections.abc import Iterable

from components import ollama as ollama_facts

from .errors import ConfigIssue, key_path

# Ollama settings that change where the server listens or keeps its models (ollama's envconfig):
# the gateway calls it on its port and the retained volume is mounted at its models path.
OLLAMA_PINNED = {
    "OLLAMA_HOST": f"moves the server off {ollama_facts.PORT}, the port the gateway and the healthcheck use",
    "OLLAMA_MODELS": f"moves the model store out of {ollama_facts.MODELS_PATH}, the volume kept across replacements",
}


def ollama_env_issues(env: dict[str, str], loc: tuple) -> Iterable[ConfigIssue]:
    """Ollama settings that would move the server off its port or its models out of the retained volume."""
    for name in sorted(env):
        if name.upper() in OLLAMA_PINNED:
            yield ConfigIssue(
                key_path((*loc, "env", name)),
                f"{name} {OLLAMA_PINNED[name.upper()]}",
                "remove it: llmstack sets where Ollama listens and keeps its models",
            )
