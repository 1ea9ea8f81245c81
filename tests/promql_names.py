"""Metric names named by PromQL expressions, and the expressions of generated dashboards and rule files."""

from __future__ import annotations

import re
from collections.abc import Iterable

import yaml

# Words that are PromQL syntax, not metric names (functions are recognised by the `(` that follows).
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset", "inf", "nan"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_VARIABLE = re.compile(r"\$\w+")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_NUMBER = re.compile(r"(?<![A-Za-z0-9_:.])\d+(\.\d+)?([eE][+-]?\d+)?")


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects: identifiers that are not functions, keywords or label names."""
    text = _STRING.sub(" ", expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _VARIABLE.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    names = set()
    for match in _IDENT.finditer(text):
        word = match.group(0)
        rest = text[match.end():].lstrip()
        if rest.startswith("(") or word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names


def dashboard_expressions(boards: Iterable[dict]) -> list[str]:
    """Every query of every panel (rows included) of these dashboards."""
    exprs = []
    for board in boards:
        for panel in board["panels"]:
            for inner in [panel, *panel.get("panels", [])]:
                exprs += [t["expr"] for t in inner.get("targets", [])]
    return exprs


def rule_expressions(rules_yaml: str) -> list[str]:
    return [rule["expr"] for group in yaml.safe_load(rules_yaml)["groups"] for rule in group["rules"]]
