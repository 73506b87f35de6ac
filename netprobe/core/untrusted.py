"""Decoding text a user or a peer handed us (YAML, JSON) without letting it cost unbounded time,
memory or a traceback: size caps, alias-expansion caps (billion laughs), nesting caps, no
non-finite or giant numbers. Every failure is one ``ConfigError`` naming the file.

Pure: bytes/text in, Python data out.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import yaml

from netprobe.errors import ConfigError

MAX_TEXT = 4 << 20           # an inventory, expectation or scenario: 4 MiB is ~40,000 hosts
MAX_NODES = 1_000_000        # YAML nodes after alias expansion
MAX_DEPTH = 64               # nesting of mappings/lists: real files use < 10
MAX_NUMBER_DIGITS = 30       # a port, a count, a timestamp: never more digits than this


def decode_text(data: bytes, *, source: str, limit: int = MAX_TEXT) -> str:
    """UTF-8 text of ``data``, or a ConfigError saying where it is not."""
    if len(data) > limit:
        raise ConfigError(f"is {len(data):,} bytes; at most {limit:,} are read", file=source)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"is not UTF-8 text (byte {exc.start})", file=source) from None


_FAST = getattr(yaml, "__with_libyaml__", False)


def _check_depth(text: str) -> None:
    """Walk the parser's events (libyaml's C parser when present: it does not recurse) and stop
    at the first level past MAX_DEPTH, before any recursive composer sees the document."""
    parser = yaml.CSafeLoader(text) if _FAST else yaml.SafeLoader(text)
    try:
        depth = 0
        while True:
            event = parser.get_event()
            if event is None or isinstance(event, yaml.StreamEndEvent):
                return
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    raise _TooDeep
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                depth -= 1
    finally:
        parser.dispose()


class _TooDeep(Exception):
    pass


def _loader(text: str):
    """libyaml's composer when present (fast; safe once the depth is checked), else PyYAML's."""
    return yaml.CSafeLoader(text) if _FAST else yaml.SafeLoader(text)


def _expanded_size(root: yaml.Node) -> tuple[int, int]:
    """(nodes with every alias expanded, depth), each memoised per node: linear in the
    document's own size however many times its anchors are referenced. ValueError on a
    recursive alias (a node that contains itself)."""
    sizes: dict[int, tuple[int, int]] = {}
    open_nodes: set[int] = set()
    stack: list[yaml.Node] = [root]
    while stack:
        node = stack[-1]
        if id(node) in sizes:
            stack.pop()
            continue
        if isinstance(node, yaml.SequenceNode):
            kids = node.value
        elif isinstance(node, yaml.MappingNode):
            kids = [n for pair in node.value for n in pair]
        else:
            kids = []
        todo = [k for k in kids if id(k) not in sizes]
        if todo and id(node) not in open_nodes:
            open_nodes.add(id(node))
            if any(id(k) in open_nodes for k in todo):
                raise ValueError("a recursive alias")
            stack.extend(todo)
            continue
        if todo:  # came back to it and a child is still open: the child contains this node
            raise ValueError("a recursive alias")
        open_nodes.discard(id(node))
        size = 1 + sum(sizes[id(k)][0] for k in kids)
        depth = 1 + max((sizes[id(k)][1] for k in kids), default=0)
        sizes[id(node)] = (min(size, MAX_NODES + 1), depth)
        stack.pop()
    return sizes[id(root)]


def load_yaml(text: str, *, source: str) -> Any:
    """One YAML document, bounded; ConfigError on bad YAML, one line."""
    if len(text) > MAX_TEXT:
        raise ConfigError(f"is {len(text):,} characters; at most {MAX_TEXT:,} are read", file=source)
    loader = None
    try:
        _check_depth(text)
        loader = _loader(text)
        node = loader.get_single_node()
        if node is None:
            return None
        try:
            size, depth = _expanded_size(node)
        except ValueError as exc:
            raise ConfigError(f"not usable YAML: {exc}", file=source) from None
        if size > MAX_NODES:
            raise ConfigError(f"expands to more than {MAX_NODES:,} YAML nodes (aliases?)", file=source)
        if depth > MAX_DEPTH:
            raise ConfigError(f"nests deeper than {MAX_DEPTH} levels", file=source)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"not valid YAML{where}: {exc.problem or exc.context}", file=source) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {str(exc).splitlines()[0]}", file=source) from None
    except (_TooDeep, RecursionError):
        raise ConfigError(f"nests deeper than {MAX_DEPTH} levels", file=source) from None
    except ValueError as exc:  # e.g. an integer of thousands of digits
        raise ConfigError(f"not usable YAML: {str(exc).splitlines()[0][:80]}", file=source) from None
    finally:
        if loader is not None:
            loader.dispose()
    _check_numbers(data, source)
    return data


def _check_numbers(data: Any, source: str) -> None:
    """No NaN/inf (YAML's .nan/.inf) and no integers longer than any field needs."""
    todo = [data]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            todo.extend(item.keys())
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
        elif isinstance(item, float) and not math.isfinite(item):
            raise ConfigError(f"has a non-finite number ({item})", file=source)
        elif isinstance(item, int) and not isinstance(item, bool) and abs(item) >= 10 ** MAX_NUMBER_DIGITS:
            raise ConfigError(f"has a number of more than {MAX_NUMBER_DIGITS} digits", file=source)


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_NUMBER_DIGITS:
        raise ValueError(f"a number of more than {MAX_NUMBER_DIGITS} digits")
    return int(text)


_LONG_DIGITS = re.compile(r"\d{%d}" % (MAX_NUMBER_DIGITS + 1))


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"a number out of range ({text[:20]})")
    return value


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def load_json(text: str, *, source: str, limit: int | None = None) -> Any:
    """JSON, bounded: no NaN/Infinity, no giant numbers, no runaway nesting."""
    if limit is not None and len(text) > limit:
        raise ConfigError(f"is {len(text):,} characters; at most {limit:,} are read", file=source)
    # the per-number hook costs ~1 us an integer (a 5,000-host result has a million): it runs only
    # when some run of digits is longer than any number allowed, anywhere in the text
    parse_int = _parse_int if _LONG_DIGITS.search(text) else None
    try:
        return json.loads(text, parse_int=parse_int, parse_float=_parse_float, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not valid JSON ({exc.msg} at line {exc.lineno})", file=source) from None
    except ValueError as exc:
        raise ConfigError(f"not valid JSON: {exc}", file=source) from None
    except RecursionError:
        raise ConfigError("not valid JSON: nested too deeply", file=source) from None
