"""Reading the configuration file: every mistake reported as `file:line: key.path: reason`.

The YAML is composed into nodes first, so that each key's line is known (PyYAML's marks); pydantic's
error locations and the cross-checks' key paths are then looked up in that index.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]
from pydantic import ValidationError

from sync_pipeline.config.checks import Loc, problems
from sync_pipeline.config.models import NAME_PATTERN, STORE_KEYS, TWENTY_PATH_PATTERN, SyncConfig

CONFIG_ENV = "SYNC_PIPELINE_CONFIG"
DEFAULT_CONFIG_PATH = Path(__file__).with_name("default.yaml")

_LineIndex = dict[tuple[str, ...], int]
_PATTERN_REASONS = {
    NAME_PATTERN: "a name is lower-case letters, digits and underscores, starting with a letter",
    TWENTY_PATH_PATTERN: "a Twenty field (jobTitle, a custom field) or one composite sub-field "
                         "(name.firstName)",
}


class ConfigError(ValueError):
    """The configuration file cannot be used; one line per problem, each naming file, line and key."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def config_path() -> Path:
    """The file `SYNC_PIPELINE_CONFIG` names, else the shipped default (today's sandbox schema)."""
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)


@cache
def active_config() -> SyncConfig:
    """The configuration the code location runs with, read once per process."""
    return load_config(config_path())


def load_config(path: str | os.PathLike[str]) -> SyncConfig:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the sync configuration: {exc.strerror or exc}"]) from None
    return parse_config(text, str(path))


def parse_config(text: str, source: str = "<string>") -> SyncConfig:
    data, lines, duplicates = _read_yaml(text, source)
    if duplicates:
        raise ConfigError([f"{source}:{line}: {_dotted(loc)}: {reason}" for loc, line, reason in duplicates])
    try:
        config = SyncConfig.model_validate(data)
    except ValidationError as exc:
        located = [_locate(source, lines, tuple(e["loc"]), _reason(e)) for e in exc.errors()]
        raise ConfigError(_sorted(located)) from None
    located = [_locate(source, lines, loc, reason) for loc, reason in problems(config)]
    if located:
        raise ConfigError(_sorted(located))
    config._source = source
    return config


def _read_yaml(text: str, source: str) -> tuple[Any, _LineIndex, list[tuple[Loc, int, str]]]:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError([f"{source}:1: the file is empty"])
        lines: _LineIndex = {(): node.start_mark.line + 1}
        duplicates: list[tuple[Loc, int, str]] = []
        _index(node, (), lines, duplicates)
        return loader.construct_document(node), lines, duplicates
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise ConfigError([f"{source}:{line}: not valid YAML: {exc.problem or exc.context}"]) from None
    finally:
        loader.dispose()


def _index(node: Any, loc: tuple[str, ...], lines: _LineIndex,
           duplicates: list[tuple[Loc, int, str]]) -> None:
    """Record the line of every key and list item below `node`; PyYAML keeps a duplicate key's last value
    silently, so duplicates are collected as problems."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = (*loc, str(key_node.value))
            line = key_node.start_mark.line + 1
            if key in lines:
                duplicates.append((key, line, f"duplicate key (first on line {lines[key]})"))
                continue
            lines[key] = line
            _index(value_node, key, lines, duplicates)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*loc, str(i))] = item.start_mark.line + 1
            _index(item, (*loc, str(i)), lines, duplicates)


def _reason(error: Any) -> str:
    loc = tuple(error["loc"])
    if error["type"] == "extra_forbidden":
        if loc[:-1] == ("stores",):
            return f'no such store "{loc[-1]}"; the stores are {", ".join(STORE_KEYS)}'
        return f'unknown key "{loc[-1]}"'
    if error["type"] == "missing":
        return "required key missing"
    if error["type"] == "string_pattern_mismatch":
        return _PATTERN_REASONS.get(error["ctx"]["pattern"], str(error["msg"]))
    return str(error["msg"])


def _locate(source: str, lines: _LineIndex, loc: Loc, reason: str) -> tuple[int, str]:
    path = tuple(str(part) for part in loc if part != "[key]")
    # The deepest key the file has: a missing key is reported on its parent's line.
    known = next(path[:n] for n in range(len(path), -1, -1) if path[:n] in lines)
    where = _dotted(tuple(part for part in loc if part != "[key]"))
    return lines[known], f"{source}:{lines[known]}: {where + ': ' if where else ''}{reason}"


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out


def _sorted(found: list[tuple[int, str]]) -> list[str]:
    return [text for _, text in sorted(found, key=lambda problem: problem[0])]
