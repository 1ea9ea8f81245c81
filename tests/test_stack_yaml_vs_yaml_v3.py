"""The stack-file reader against the real gopkg.in/yaml.v3 (the parser the Pulumi CLI reads stack files with).

tests/yaml_v3/main.go is built with Debian's golang-go and golang-gopkg-yaml.v3-dev (3.0.1, the
version Pulumi pins), which .ci/run installs. Without them the test is skipped with the reason, unless
CI=true, where that is a failure.
"""

import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from config import stack_yaml

SOURCE = Path(__file__).resolve().parent / "yaml_v3" / "main.go"
GOPATH = Path("/usr/share/gocode")  # where Debian's golang-gopkg-* packages put their sources

SCALARS = [
    "yes", "no", "on", "off", "y", "n", "Yes", "ON", "true", "True", "TRUE", "tRue", "false", "null", "Null", "NULL", "~", "",
    "1:10", "190:20:30", "12:30", "1e3", "1E3", "1.5e-3", ".5", "5.", "-.5", "+.5", ".inf", "-.Inf", "+.INF", ".nan", "nan",
    "inf", "0x1F", "0X1f", "-0x10", "+0x10", "0o17", "0O17", "0b101", "-0b101", "010", "08", "0_1", "1_000", "1__0", "_1",
    "1_", "+5", "-0", "00", "123456789012345678901", "18446744073709551615", "18446744073709551616",
    "-9223372036854775808", "-9223372036854775809", "1e500", "1.", "1.2.3", "0.0.0.0", "127.1", "1h30m", "0x", "0o", "-",
    "+", "1e", "e3", "0.1_5", "1,000", "0xG", "0o8", "0b2", ".", "1e+3", "qwen2.5vl:7b-q4_K_M", "4096", "0.75", "131072",
]


@pytest.fixture(scope="module")
def yaml_v3(tmp_path_factory) -> Path:
    missing = [what for what, present in (("go", shutil.which("go")), ("yaml.v3", (GOPATH / "src/gopkg.in/yaml.v3").is_dir())) if not present]
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{', '.join(missing)} missing: .ci/run installs golang-go and golang-gopkg-yaml.v3-dev")
        pytest.skip(f"{', '.join(missing)} missing (apt-get install golang-go golang-gopkg-yaml.v3-dev)")
    work = tmp_path_factory.mktemp("yaml_v3")
    binary = work / "yaml_v3"
    env = {**os.environ, "GOPATH": str(GOPATH), "GO111MODULE": "off", "GOCACHE": str(work / "cache"), "HOME": str(work)}
    subprocess.run(["go", "build", "-o", str(binary), str(SOURCE)], check=True, env=env, timeout=300)
    return binary


def read_with_yaml_v3(binary: Path, text: str) -> object:
    out = subprocess.run([str(binary)], input=text, capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    return out if out.startswith("ERROR:") else json.loads(out)


def typed(value: object) -> dict:
    """Our value in the shape main.go prints."""
    if isinstance(value, bool):
        return {"bool": value}
    if value is None:
        return {"null": None}
    if isinstance(value, int):
        return {"int": str(value)}
    if isinstance(value, float):
        return {"float": "NaN" if math.isnan(value) else "+Inf" if value == math.inf else "-Inf" if value == -math.inf else None}
    return {"str": value}


def test_plain_scalars_read_as_yaml_v3_reads_them(yaml_v3):
    differ = []
    for text in SCALARS:
        theirs = read_with_yaml_v3(yaml_v3, f"a: {text}\n")
        try:
            ours = stack_yaml.load(f"a: {text}\n".encode())["a"]
        except stack_yaml.StackYamlError as error:
            ours = f"ERROR: {error.problem}"
        if isinstance(theirs, str) or isinstance(ours, str) and ours.startswith("ERROR:"):
            same = isinstance(theirs, str) and isinstance(ours, str) and ours.startswith("ERROR:")  # both refuse it
            if not same:
                differ.append((text, theirs, ours))
            continue
        theirs = theirs["map"]["a"]
        if "float" in theirs and isinstance(ours, float) and math.isfinite(ours):
            same = math.isclose(ours, float(theirs["float"]), rel_tol=1e-15)  # Go prints 1e+20, Python 1e+20 too, 0.001 vs 1e-3
        elif "timestamp" in theirs:
            same = isinstance(ours, str)  # Pulumi passes a timestamp on as text
        else:
            same = typed(ours) == theirs
        if not same:
            differ.append((text, theirs, ours))
    print(f"{len(SCALARS) - len(differ)} of {len(SCALARS)} plain scalars read alike")
    assert differ == []


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\na: 2\n",
        "config:\n  llmstack:gateway: {bind: 127.0.0.1}\n  llmstack:gateway: {bind: 0.0.0.0}\n",
        "a: &x [1, *x]\n",
        "a: !!int yes\n",
        "a: [unclosed\n",
    ],
)
def test_files_yaml_v3_refuses_are_refused(yaml_v3, text):
    assert str(read_with_yaml_v3(yaml_v3, text)).startswith("ERROR:")
    with pytest.raises(stack_yaml.StackYamlError):
        stack_yaml.load(text.encode())


def test_alias_bomb_refused_by_both(yaml_v3):
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 12)]
    text = "\n".join(lines) + "\n"
    assert "excessive aliasing" in read_with_yaml_v3(yaml_v3, text)
    with pytest.raises(stack_yaml.StackYamlError, match="through aliases"):
        stack_yaml.load(text.encode())


@pytest.mark.parametrize("name", ["Pulumi.dev.yaml", "Pulumi.prod.yaml"])
def test_committed_stack_files_read_alike(yaml_v3, name):
    root = Path(__file__).resolve().parent.parent
    text = (root / name).read_text()

    def plain(node: dict) -> object:
        (kind, value), = node.items()
        if kind == "map":
            return {k: plain(v) for k, v in value.items()}
        if kind == "seq":
            return [plain(v) for v in value]
        return typed_value(kind, value)

    def typed_value(kind: str, value: object) -> object:
        return int(value) if kind == "int" else float(value) if kind == "float" else value

    assert plain(read_with_yaml_v3(yaml_v3, text)) == stack_yaml.load(text.encode())
