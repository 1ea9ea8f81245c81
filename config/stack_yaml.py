"""Reads a Pulumi.<stack>.yaml as the Pulumi CLI does (Go's yaml.v3: YAML 1.2 scalars, duplicate keys refused), within size, depth and alias limits."""

import math
import re
from dataclasses import dataclass
from typing import Any, Optional

import yaml
from yaml.composer import Composer
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

# A stack file is a few kilobytes; these bounds keep a hostile one from costing more than a fraction
# of a second (the pure-Python parser reads about a megabyte a second).
MAX_BYTES = 256 * 1024
MAX_DEPTH = 64
# Nodes after every alias is expanded: an "alias bomb" (each level aliasing the previous one nine
# times) reaches this after a few hundred nodes of text, long before it could fill memory.
MAX_EXPANDED_NODES = 100_000

_TAG = "tag:yaml.org,2002:"
_PLAIN = "tag:llmstack:plain"  # an untagged plain scalar, resolved below as yaml.v3 resolves it
_MERGE_KEY = "<<"

# yaml.v3's resolve table (resolve.go): these exact spellings, nothing else (so `yes`, `on`, `No`
# are strings, as in YAML 1.2's core schema).
_SPECIAL = {
    **{s: True for s in ("true", "True", "TRUE")},
    **{s: False for s in ("false", "False", "FALSE")},
    **{s: None for s in ("", "~", "null", "Null", "NULL")},
    **{s: math.nan for s in (".nan", ".NaN", ".NAN")},
    **{s: math.inf for s in (".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF")},
    **{s: -math.inf for s in ("-.inf", "-.Inf", "-.INF")},
}
_YAML_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_GO_INT = re.compile(r"^[-+]?(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)$")
_TIMESTAMP = re.compile(r"^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}([Tt ][0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(\.[0-9]*)?(Z|[-+][0-9]{2}:[0-9]{2})?)?$")
_INT64 = (-(2**63), 2**64 - 1)  # ParseInt, then ParseUint


@dataclass(frozen=True)
class StackYamlError(Exception):
    """A stack file the Pulumi CLI would refuse, or that is too large, deep or aliased to read safely."""

    problem: str
    fix: str


def _go_int(text: str) -> Optional[int]:
    """The integer Go's strconv.ParseInt(text, 0, 64) (then ParseUint) reads, or None."""
    if not _GO_INT.match(text):
        return None
    sign, digits = (-1, text[1:]) if text[0] == "-" else (1, text.lstrip("+"))
    prefix = digits[:2].lower()
    if prefix in ("0x", "0o", "0b"):
        value = int(digits[2:], {"0x": 16, "0o": 8, "0b": 2}[prefix])
    elif len(digits) > 1 and digits[0] == "0":
        value = int(digits, 8)  # Go reads a leading zero as octal (YAML 1.1's 0777, kept by yaml.v3)
    else:
        value = int(digits)
    value *= sign
    return value if _INT64[0] <= value <= _INT64[1] else None


def plain_scalar(text: str) -> Any:
    """The value of an untagged plain scalar as yaml.v3 resolves it (resolve.go), timestamps kept as text."""
    if text in _SPECIAL:
        return _SPECIAL[text]
    first = text[:1]
    if first == ".":
        return _go_float(text) if _YAML_FLOAT.match(text) else text
    if first and (first.isdigit() or first in "+-"):
        if _TIMESTAMP.match(text):
            return text  # Pulumi passes a timestamp to the program as text
        plain = text.replace("_", "")
        number = _go_int(plain)
        if number is not None:
            return number
        if _YAML_FLOAT.match(plain):
            return _go_float(plain, text)
    return text


def _go_float(text: str, original: Optional[str] = None) -> Any:
    """strconv.ParseFloat: an overflow is an error, so yaml.v3 keeps the scalar as text."""
    value = float(text)
    return (original or text) if math.isinf(value) else value


class _Resolver(BaseResolver):
    """Tags nothing implicitly but `<<`: plain scalars are resolved by `plain_scalar`, quoted ones are strings."""

    def resolve(self, kind: type, value: Any, implicit: Any) -> str:
        if kind is ScalarNode:
            if implicit[0]:
                return _TAG + "merge" if value == _MERGE_KEY else _PLAIN
            return _TAG + "str"
        return _TAG + ("seq" if kind is SequenceNode else "map")


class _LimitedComposer(Composer):
    """PyYAML's composer with a depth bound and a running count of nodes with every alias expanded."""

    def __init__(self) -> None:
        super().__init__()
        self._depth = 0
        self._sizes: dict[int, int] = {}

    def compose_node(self, parent: Optional[Node], index: Any) -> Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            node = super().compose_node(parent, index)
            if id(node) not in self._sizes:
                raise StackYamlError(
                    f"the alias *{event.anchor} at line {event.start_mark.line + 1} refers to the collection that contains it",
                    "remove the recursive alias",
                )
            return node
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise StackYamlError(
                    f"nesting deeper than {MAX_DEPTH} levels at line {event.start_mark.line + 1}",
                    "a stack file needs a few levels: flatten the value",
                )
        try:
            node = super().compose_node(parent, index)
        finally:
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                self._depth -= 1
        size = 1
        if isinstance(node, SequenceNode):
            size += sum(self._sizes[id(child)] for child in node.value)
        elif isinstance(node, MappingNode):
            size += sum(self._sizes[id(k)] + self._sizes[id(v)] for k, v in node.value)
        if size > MAX_EXPANDED_NODES:
            raise StackYamlError(
                f"the value ending at line {node.end_mark.line + 1} expands to more than {MAX_EXPANDED_NODES} nodes "
                "through aliases",
                "write the values out instead of repeating aliases of aliases",
            )
        self._sizes[id(node)] = size
        return node


class _Loader(Reader, Scanner, Parser, _LimitedComposer, _Resolver):
    def __init__(self, text: str) -> None:
        Reader.__init__(self, text)
        Scanner.__init__(self)
        Parser.__init__(self)
        _LimitedComposer.__init__(self)
        _Resolver.__init__(self)


def _line(node: Node) -> int:
    return node.start_mark.line + 1


def _tagged_scalar(node: ScalarNode) -> Any:
    """A scalar with an explicit standard tag (`!!str 1`, `!!int "3"`), checked as yaml.v3 checks it."""
    kind = node.tag.removeprefix(_TAG)
    if kind == "str":
        return node.value
    value = plain_scalar(node.value)
    expected = {"int": (int,), "float": (int, float), "bool": (bool,), "null": (type(None),)}.get(kind)
    if expected is None or isinstance(value, bool) != (kind == "bool") or not isinstance(value, expected):
        raise StackYamlError(f"line {_line(node)}: {node.value!r} cannot be read as !!{kind}", "remove the tag or fix the value")
    return float(value) if kind == "float" else value


def _construct(node: Node, where: str, config_key: Any = None) -> Any:
    """The value of a node; `where` is its key path as written (`llmstack:gateway.bind`), for messages."""
    if isinstance(node, ScalarNode):
        if node.tag == _PLAIN:
            return plain_scalar(node.value)
        if node.tag.startswith(_TAG) and node.tag != _TAG + "merge":
            return _tagged_scalar(node)
    elif isinstance(node, SequenceNode) and node.tag == _TAG + "seq":
        return [_construct(child, f"{where}[{i}]") for i, child in enumerate(node.value)]
    elif isinstance(node, MappingNode) and node.tag == _TAG + "map":
        if not where and config_key is not None:  # the document itself
            return _mapping(node, where, config_key=config_key)
        return _mapping(node, where)
    raise StackYamlError(f"line {_line(node)}: the tag {node.tag} is not supported", "remove the tag")


def _mapping(node: MappingNode, where: str, same_key: Any = None, config_key: Any = None) -> dict:
    """A mapping's keys and values; a key given twice is an error naming both lines.

    `same_key(key)` gives keys that mean the same key one identity (`gateway` and `llmstack:gateway`
    under `config:`, given as `config_key` for the document)."""
    result: dict = {}
    seen: dict[Any, tuple[Any, int]] = {}
    merged: list[dict] = []
    for key_node, value_node in node.value:
        if isinstance(key_node, ScalarNode) and key_node.tag == _TAG + "merge":
            sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
            for source in sources:
                if not isinstance(source, MappingNode):
                    raise StackYamlError(f"line {_line(source)}: `<<` merges only mappings", "merge a mapping alias such as <<: *defaults")
                merged.append(_mapping(source, where))
            continue
        key = _construct(key_node, where)
        if not isinstance(key, str):
            # Pulumi hands structured values to the program as JSON, whose keys are text: `1:` or `true:`
            # would be a number here and text in the program.
            raise StackYamlError(
                f"line {_line(key_node)}: a key is not text ({type(key).__name__})", "quote it, or write a name"
            )
        identity = same_key(key) if same_key else key
        path = f"{where}.{key}" if where else str(key)
        if identity in seen:
            first, line = seen[identity]
            also = f" (`{key}` and `{first}` name the same key)" if first != key else ""
            raise StackYamlError(
                f"the key `{path}` is given twice, at lines {line} and {_line(key_node)}{also}; Pulumi refuses a repeated key",
                f"keep one of the two (line {line} or line {_line(key_node)})",
            )
        seen[identity] = (key, _line(key_node))
        if config_key is not None and key == "config" and isinstance(value_node, MappingNode) and value_node.tag == _TAG + "map":
            result[key] = _mapping(value_node, "", same_key=config_key)  # keys under config: are written in full
        else:
            result[key] = _construct(value_node, path)
    for source in merged:  # explicit keys win, then the first merged mapping (the YAML merge rule)
        for key, value in source.items():
            result.setdefault(key, value)
    return result


def _code_point(character: Any) -> str:
    return f"U+{character if isinstance(character, int) else ord(character):04X}"


def decode(data: bytes) -> str:
    """The file's text: UTF-8 as Pulumi requires (a BOM is allowed), within the size limit."""
    if len(data) > MAX_BYTES:
        raise StackYamlError(f"is larger than {MAX_BYTES} bytes, far more than a stack file needs", "trim the file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        before = data[: error.start]
        line = before.count(b"\n") + 1
        column = error.start - (before.rfind(b"\n") + 1) + 1
        raise StackYamlError(
            f"is not UTF-8: byte 0x{data[error.start]:02x} at line {line}, column {column}", "save the file as UTF-8"
        ) from None


_QUOTED_OR_COMMENT = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\']|\'\')*\'|(?<!\S)#[^\n]*')


def _check_flow_depth(text: str) -> None:
    """Refuses deeply nested `[`/`{` before parsing: PyYAML's scanner reads a nested flow collection to its end
    before the composer sees the first level, with a cost quadratic in the depth (a second for 5000 levels)."""
    depth = 0
    for line_number, line in enumerate(_QUOTED_OR_COMMENT.sub("", text).split("\n"), start=1):
        for character in line:
            if character in "[{":
                depth += 1
                if depth > MAX_DEPTH:
                    raise StackYamlError(
                        f"nesting deeper than {MAX_DEPTH} levels at line {line_number}",
                        "a stack file needs a few levels: flatten the value",
                    )
            elif character in "]}":
                depth = max(depth - 1, 0)


def load(data: bytes, config_key: Any = None) -> Any:
    """The document of a stack file. `config_key(key)` names the identity of keys under `config:` (namespace aliases)."""
    text = decode(data)
    _check_flow_depth(text)
    try:
        loader = _Loader(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except RecursionError:
        raise StackYamlError(f"nesting deeper than {MAX_DEPTH} levels", "a stack file needs a few levels: flatten the value") from None
    except yaml.reader.ReaderError as error:
        before = text[: error.position]
        line, column = before.count("\n") + 1, error.position - (before.rfind("\n") + 1) + 1
        raise StackYamlError(
            f"holds the control character {_code_point(error.character)} at line {line}, column {column}",
            "remove it (a stack file is text: YAML allows no control character)",
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise StackYamlError(f"is not valid YAML{where}", "fix the YAML syntax (indentation, quotes, colons)") from None
    if root is None:
        return None
    return _construct(root, "", config_key)
