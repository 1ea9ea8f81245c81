"""Stack files are read as the Pulumi CLI reads them (Go's yaml.v3): YAML 1.2 scalars, duplicate keys refused, hostile files refused fast."""

import io
import subprocess
import sys
import time

import pytest

from config import stack_yaml
from config.cli import main
from config.errors import StackConfigError
from config.plan import run_program
from config.source import from_stack_file
from config.validation import validate
from tests.conftest import ROOT

VLLM = "  llmstack:vllm:\n    - {name: qwen3, model: Qwen/Qwen3-30B-A3B-FP8}\n"


@pytest.mark.parametrize(
    "text,value",
    [
        # YAML 1.1 booleans are strings in YAML 1.2 (yaml.v3 knows only true/false in three spellings)
        ("yes", "yes"), ("on", "on"), ("No", "No"), ("y", "y"), ("True", True), ("FALSE", False),
        # no sexagesimal numbers
        ("1:10", "1:10"), ("190:20:30", "190:20:30"),
        # floats of the core schema
        ("1e3", 1000.0), (".5", 0.5), ("-.inf", float("-inf")), ("1.", 1.0),
        # Go's integer syntax: prefixes, underscores, a leading zero is octal
        ("0x1F", 31), ("0o17", 15), ("0b101", 5), ("010", 8), ("1_000", 1000), ("+5", 5), ("-0x10", -16),
        # beyond uint64: a float, as ParseFloat reads it
        ("99999999999999999999", 1e20), ("1e500", "1e500"),
        ("~", None), ("null", None), ("NULL", None), ("Nul", "Nul"),
        # timestamps reach the program as text
        ("2026-11-28", "2026-11-28"),
        ("0.0.0.0", "0.0.0.0"), ("qwen2.5vl:7b", "qwen2.5vl:7b"),
    ],
)
def test_plain_scalars_resolve_as_yaml_v3_does(text, value):
    assert stack_yaml.load(f"a: {text}\n".encode()) == {"a": value}
    assert stack_yaml.load(f"a: '{text}'\n".encode()) == {"a": text}  # quoted: always a string


def test_explicit_tags_are_checked():
    assert stack_yaml.load(b"a: !!int '12'\nb: !!str 12\nc: !!float 1\n") == {"a": 12, "b": "12", "c": 1.0}
    with pytest.raises(stack_yaml.StackYamlError, match="cannot be read as !!int"):
        stack_yaml.load(b"a: !!int yes\n")


def test_merge_keys_as_yaml_v3_reads_them():
    document = stack_yaml.load(b"base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  y: 3\n")
    assert document["c"] == {"x": 1, "y": 3}


def test_duplicate_key_names_the_key_and_both_lines():
    text = b"config:\n  llmstack:gateway:\n    bind: 127.0.0.1\n    port: 4000\n    bind: 0.0.0.0\n"
    with pytest.raises(stack_yaml.StackYamlError) as error:
        stack_yaml.load(text, config_key=lambda key: key)
    assert "`llmstack:gateway.bind`" in error.value.problem and "lines 3 and 5" in error.value.problem


def test_namespace_aliases_are_one_key(tmp_path):
    path = tmp_path / "Pulumi.dup.yaml"
    path.write_text("config:\n  gateway: {bind: 0.0.0.0}\n" + VLLM + "  llmstack:gateway: {bind: 127.0.0.1}\n")
    with pytest.raises(StackConfigError) as refused:
        from_stack_file(path)
    assert "lines 2 and 5" in refused.value.report() and "name the same key" in refused.value.report()


def test_other_namespaces_are_not_ours(tmp_path):
    path = tmp_path / "Pulumi.ns.yaml"
    path.write_text("config:\n  docker:host: x\n  other:gateway: y\n" + VLLM)
    assert set(from_stack_file(path)) == {"vllm"}


def _alias_bomb(levels: int) -> bytes:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return ("\n".join(lines) + "\n").encode()


HOSTILE = {
    "alias bomb": (_alias_bomb(12), "through aliases"),
    "5000 levels of flow nesting": (b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n", "nesting deeper than"),
    "5000 levels of block nesting": ("".join(f"{' ' * i}k{i}:\n" for i in range(0, 400)).encode(), "nesting deeper than"),
    "a byte that is not UTF-8": (b"a: caf\xe9\n", "is not UTF-8: byte 0xe9 at line 1, column 7"),
    "a NUL byte": (b"a: x\x00y\n", "control character U+0000 at line 1, column 5"),
    "a file too large": (b"a: " + b"x" * (stack_yaml.MAX_BYTES + 10) + b"\n", "larger than"),
    "a recursive alias": (b"a: &x [1, *x]\n", "refers to the collection that contains it"),
    "two documents": (b"a: 1\n---\nb: 2\n", "is not valid YAML at line 2"),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_files_are_refused_with_a_clear_error(name, tmp_path):
    data, message = HOSTILE[name]
    with pytest.raises(stack_yaml.StackYamlError) as error:
        stack_yaml.load(data)
    assert message in error.value.problem
    path = tmp_path / "Pulumi.hostile.yaml"
    path.write_bytes(data)
    err = io.StringIO()
    assert main(["check", str(path)], out=io.StringIO(), err=err) == 2
    assert message in err.getvalue() and "Traceback" not in err.getvalue()


def test_hostile_files_cost_a_fraction_of_a_second():
    """Figures, not a timed assertion: print what each refusal took."""
    for name, (data, _) in HOSTILE.items():
        start = time.perf_counter()
        with pytest.raises(stack_yaml.StackYamlError):
            stack_yaml.load(data)
        print(f"{name}: refused in {1000 * (time.perf_counter() - start):.1f} ms")


def test_yes_is_a_string_everywhere(tmp_path):
    """`name: yes` means the string to Pulumi; check and the program agree, and render names the model `yes`."""
    path = tmp_path / "Pulumi.yes.yaml"
    path.write_text("config:\n  llmstack:ollama:\n    models:\n      - {name: yes, model: \"qwen3:8b\"}\n")
    raw = from_stack_file(path)
    assert validate(raw).ollama.models[0].name == "yes"
    plan = run_program(raw)
    assert "yes" in {m for ms in plan.outputs["models"].values() for m in ms}


@pytest.mark.parametrize("name", ["Pulumi.dev.yaml", "Pulumi.prod.yaml"])
def test_committed_stack_files_read_the_same_as_before(name):
    """The committed files mean the same under YAML 1.2 as under PyYAML's YAML 1.1."""
    import yaml

    from config.source import NAMESPACE, _own_key, _secure

    document = yaml.safe_load((ROOT / name).read_text())
    expected = {_own_key(k, NAMESPACE): _secure(v) for k, v in document["config"].items()}
    assert from_stack_file(ROOT / name) == expected


def test_check_render_and_diff_agree_on_a_hostile_file(tmp_path):
    """Every command refuses the file the same way: exit 2, the reader's message, no traceback."""
    path = tmp_path / "Pulumi.bomb.yaml"
    path.write_bytes(_alias_bomb(12))
    for argv in (["check", str(path)], ["render", str(path)], ["diff", str(path), str(ROOT / "Pulumi.dev.yaml")]):
        run = subprocess.run([sys.executable, "-m", "config", *argv], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert run.returncode == 2, (argv, run.stderr)
        assert "through aliases" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.parametrize("text", [b"a: {1: x}\n", b"? [a]\n: 1\n", b"true: 1\n", b"a: {null: x}\n"])
def test_keys_are_text(text):
    """JSON (how Pulumi passes a structured value to the program) has text keys only: check must see the same."""
    with pytest.raises(stack_yaml.StackYamlError, match="a key is not text"):
        stack_yaml.load(text)
