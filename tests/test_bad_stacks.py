"""A catalogue of bad stack files (tests/bad_stacks/*.yaml): each is refused by `config check` and by the program, before any resource.

Every file starts with one comment line:  `# <what is wrong>; expect: <key path> | <fix fragment>`.
The key path is where the report points (`llmstack:gateway.port`), or the file's own name for mistakes
in the file itself (invalid YAML, no `config:` mapping), which are reported before the program could run.
"""

import io
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pytest

from config.cli import main
from config import stack_yaml
from config.errors import NAMESPACE, StackConfigError
from config.plan import run_program
from config.source import from_stack_file
from tests.conftest import ROOT

BAD_DIR = Path(__file__).resolve().parent / "bad_stacks"
HEADER = re.compile(r"^# (?P<what>\S.*?); expect: (?P<key>\S.*?) \| (?P<fix>\S.*)$")
MIN_CASES = 160
# A few cases also run as a real `python -m config check` process.
SUBPROCESS_CASES = (
    "invalid-yaml-bracket.yaml",
    "config-not-mapping.yaml",
    "empty-file.yaml",
    "gpu-over-commit.yaml",
    "plaintext-master-key.yaml",
    "clash-vllm-names-by-punctuation.yaml",
    "yaml-alias-bomb.yaml",
    "yaml-deep-nesting.yaml",
    "yaml-not-utf8.yaml",
    "ssh-proxy-command.yaml",
    "credential-extra-args-hf-token.yaml",
)


@dataclass(frozen=True)
class Case:
    path: Path
    what: str
    key: str
    fix: str

    @property
    def file_level(self) -> bool:
        """A mistake in the file itself: reported by the reader, never reaches the program."""
        return not self.key.startswith(f"{NAMESPACE}:")

    def report_lines(self, report: str) -> list[str]:
        """The lines of a report that name this case's key path (the file's path for file-level mistakes)."""
        lines = []
        for line in report.splitlines():
            where = line.split(": ", 1)[0]
            if where.startswith("  - ") and (where.endswith(f"/{self.key}") if self.file_level else where == f"  - {self.key}"):
                lines.append(line)
        assert lines, f"{self.path.name}: no error names {self.key!r}:\n{report}"
        return lines


def text_of(path: Path) -> str:
    """The file's text; a byte that is not UTF-8 (one case is about exactly that) shows as U+FFFD."""
    return path.read_bytes().decode("utf-8", "replace")


def load_case(path: Path) -> Case:
    first = (text_of(path).splitlines() or [""])[0]
    match = HEADER.match(first)
    assert match, f"{path.name}: first line must be `# <what>; expect: <key path> | <fix fragment>`, not {first!r}"
    return Case(path, match["what"], match["key"], match["fix"])


CASES = [load_case(p) for p in sorted(BAD_DIR.glob("*.yaml"))]
# The files `config check` refused as expected in this run; tests/conftest.py prints how many.
CHECKED: set[str] = set()
IDS = [c.path.stem for c in CASES]


def check(path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["check", str(path)], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def assert_names_key_and_fix(case: Case, report: str) -> None:
    lines = case.report_lines(report)
    assert all(". Fix: " in line for line in lines), lines
    assert any(case.fix in line.split(". Fix: ", 1)[1] for line in lines), f"{case.path.name}: fix {case.fix!r} not in {lines}"


def test_catalogue_is_large_and_distinct():
    assert len(CASES) >= MIN_CASES, f"only {len(CASES)} bad stack files"
    expectations = [(c.key, c.fix) for c in CASES]
    assert len(set(expectations)) == len(expectations), sorted(e for e in expectations if expectations.count(e) > 1)
    whats = [c.what for c in CASES]
    assert len(set(whats)) == len(whats), sorted(w for w in whats if whats.count(w) > 1)
    texts = [text_of(c.path).split("\n", 1)[-1] for c in CASES]
    assert len(set(texts)) == len(texts), "two bad stack files have the same content"


def test_catalogue_files_look_like_stack_files():
    """Every file (but the ones about the file's shape) is a Pulumi.<stack>.yaml: `config:` with llmstack: keys."""
    for case in CASES:
        if case.file_level:
            continue
        document = stack_yaml.load(case.path.read_bytes())
        if document is None:  # the empty stack file
            continue
        assert set(document) == {"config"}, case.path.name
        assert any(str(k).startswith(f"{NAMESPACE}:") for k in document["config"]), case.path.name


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_check_names_the_key_and_the_fix(case):
    code, out, err = check(case.path)
    assert code == 2, f"{case.path.name}: exit {code}\n{out}{err}"
    assert out == ""
    assert "Traceback" not in err
    assert re.match(r"\d+ errors? in the llmstack stack config:\n", err), err
    assert_names_key_and_fix(case, err)
    CHECKED.add(case.path.name)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_program_refuses_before_any_resource(case, monkeypatch):
    import config.plan as plan_module

    registered: list[str] = []
    original = plan_module._RecordingMonitor.RegisterResource

    def spy(self, request):
        registered.append(request.type)
        return original(self, request)

    monkeypatch.setattr(plan_module._RecordingMonitor, "RegisterResource", spy)
    if case.file_level:
        # An unreadable file never reaches the program: the reader refuses it with the same report.
        with pytest.raises(StackConfigError) as refused:
            from_stack_file(case.path)
        assert_names_key_and_fix(case, refused.value.report())
        return
    raw = from_stack_file(case.path)
    with pytest.raises(pulumi.RunError) as stop:
        run_program(raw)
    text = str(stop.value)
    assert "Traceback" not in text
    # The program sees decrypted config, so a `secure:` leaf is reported on its whole key: check the section.
    section = re.split(r"[.\[]", case.key, maxsplit=1)[0]
    assert f"  - {section}" in text and case.fix in text, text
    assert [t for t in registered if t != "pulumi:pulumi:Stack"] == []


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_check_as_a_process(name):
    case = next(c for c in CASES if c.path.name == name)
    run = subprocess.run(
        [sys.executable, "-m", "config", "check", str(case.path)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 2, run.stderr
    assert run.stdout == ""
    assert "Traceback" not in run.stderr
    assert_names_key_and_fix(case, run.stderr)
