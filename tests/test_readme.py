"""The README's example stack config stays valid as the schema evolves."""

import re

import yaml

from config.source import from_stack_file
from config.validation import validate
from tests.conftest import ROOT


def test_readme_example_stack_is_valid(tmp_path):
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Configuring a stack"):]
    example = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    assert "llmstack:vllm" in example and "llmstack:speaches" in example
    path = tmp_path / "Pulumi.readme.yaml"
    path.write_text(example)
    stack = validate(from_stack_file(path))
    assert [v.name for v in stack.vllm] == ["qwen3"]
    assert yaml.safe_load(example)["config"]["llmstack:gateway"]["fallbacks"] == {"qwen3": ["qwen2.5-vl"]}
