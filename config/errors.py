"""Config errors a user can cause: each names the key as written in the stack file and how to fix it."""

from dataclasses import dataclass

NAMESPACE = "llmstack"


@dataclass(frozen=True, order=True)
class ConfigIssue:
    """One mistake in a stack file."""

    path: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}. Fix: {self.fix}"


class StackConfigError(Exception):
    """Every mistake found in one stack's config, reported together."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = sorted(set(issues), key=lambda i: (i.path, i.message))
        super().__init__(self.report())

    def report(self) -> str:
        from .credentials import redact  # a report echoes values: never a credential among them

        count = len(self.issues)
        lines = [f"{count} error{'s' if count != 1 else ''} in the llmstack stack config:"]
        lines += [f"  - {redact(str(issue))}" for issue in self.issues]
        return "\n".join(lines)


def key_path(loc: tuple) -> str:
    """`llmstack:vllm[0].gpuMemoryUtilization` from a location tuple such as ("vllm", 0, "gpuMemoryUtilization")."""
    if not loc:
        return f"{NAMESPACE}:<root>"
    text = f"{NAMESPACE}:{loc[0]}"
    for part in loc[1:]:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text
