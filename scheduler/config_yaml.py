"""Reading the schedule file's YAML safely: a file nobody here wrote cannot hurt the reader.

PyYAML's SafeLoader builds only plain types, but it still lets the last of two equal keys
win in silence, and expands aliases without limit: a few kilobytes of nested anchors
("billion laughs") become gigabytes once the document is walked. This loader refuses both,
and :func:`read_schedule_text` refuses files too big or not UTF-8 before any parsing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, SequenceNode

# Far above any real schedule (a few KB even with hundreds of lines), far below harm.
MAX_CONFIG_BYTES = 1024 * 1024
# Aliases a schedule may use: anchors are handy for sharing a card between lines, not more.
MAX_ALIASES = 100
# Nodes built once aliases are followed: the expanded size, whatever the nesting.
MAX_NODES = 100_000


class YamlProblem(Exception):
    """The YAML cannot be used; the message names the line where it can."""


class ScheduleLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and bounds alias expansion."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise YamlProblem(
                    f"line {mark.line + 1}: more than {MAX_ALIASES} aliases (*name); "
                    "a schedule does not need that many"
                )
        return super().compose_node(parent, index)

    def construct_document(self, node: Node) -> Any:
        _check_expanded_size(node)
        return super().construct_document(node)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # "<<: *defaults" merges keys; the explicit ones win, by design
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                raise ConstructorError(
                    None, None, "a mapping key must be a plain value", key_node.start_mark
                ) from None
            line = key_node.start_mark.line + 1
            if first is not None:
                raise YamlProblem(f"line {line}: key {str(key)[:60]!r} repeats line {first}")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _check_expanded_size(root: Node) -> None:
    """Count nodes as construction will visit them (aliases followed), up to MAX_NODES."""
    count = 0
    stack: list[Node] = [root]
    while stack:
        node = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise YamlProblem(
                f"the document expands to more than {MAX_NODES} values (aliases nested in "
                "aliases?); refusing to build it"
            )
        if isinstance(node, SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, MappingNode):
            for key, value in node.value:
                stack.append(key)
                stack.append(value)


def read_schedule_text(path: Path) -> str:
    """The file's text: at most MAX_CONFIG_BYTES of UTF-8. OSError when it cannot be read."""
    with path.open("rb") as handle:
        raw = handle.read(MAX_CONFIG_BYTES + 1)
    if len(raw) > MAX_CONFIG_BYTES:
        raise YamlProblem(f"larger than {MAX_CONFIG_BYTES} bytes; a schedule is a few KB")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise YamlProblem(f"line {line}: not UTF-8 text (byte {exc.start})") from exc


def load_yaml(text: str) -> Any:
    """One YAML document with ScheduleLoader; YamlProblem or yaml.YAMLError when bad."""
    loader = ScheduleLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
