"""Reading policy files (TOML or YAML) and the shipped presets.

:func:`parse_policy` is the one entry point from bytes to a
:class:`~brakepedal.policy.model.Policy`. It takes bytes and returns a value (no file access;
the CLI reads the file), and every defect is an :class:`~brakepedal.errors.InputError` whose
reason starts with ``policy.`` and whose message names the file and the field::

    policy eu-ai-act.toml: rules[1].threshold_flop: must not be negative [policy.threshold_negative]

YAML is read with PyYAML's safe loader, hardened further: aliases are refused (an alias bomb
expands to exponentially many nodes for whoever walks the result), and so are merge keys
(``<<``) and duplicate keys (YAML says they are an error; PyYAML keeps the last one silently).
"""

from __future__ import annotations

import tomllib
from collections.abc import Hashable, Mapping
from functools import cache
from importlib import resources
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from brakepedal.errors import InputError
from brakepedal.model.limits import DEFAULT_LIMITS, Limits
from brakepedal.policy.model import Policy

__all__ = [
    "StrictSafeLoader",
    "error_path",
    "load_preset",
    "parse_policy",
    "policy_from_mapping",
    "preset_names",
]

_PRESETS = "presets"

#: pydantic error types and the reason each becomes; anything else is ``policy.field_invalid``.
_REASONS = {
    "extra_forbidden": "policy.unknown_field",
    "missing": "policy.field_missing",
    "too_short": "policy.list_empty",
}


def parse_policy(data: bytes, *, name: str, limits: Limits = DEFAULT_LIMITS) -> Policy:
    """Parse a policy file; ``name`` (a file name) picks TOML or YAML and labels errors.

    Raises:
        InputError: ``policy.*`` naming the field, for anything that is not a valid policy.
    """
    if not name.endswith((".toml", ".yaml", ".yml")):
        raise InputError(
            "policy.format_unknown", f"policy {name}: the name must end in .toml, .yaml or .yml"
        )
    if not isinstance(data, bytes):
        raise InputError("policy.not_bytes", f"policy {name}: expected bytes")
    if len(data) > limits.max_json_bytes:
        raise InputError(
            "policy.too_large",
            f"policy {name}: {len(data)} bytes, more than {limits.max_json_bytes}",
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError("policy.not_utf8", f"policy {name}: not UTF-8 ({e.reason})") from e
    document = _read_toml(text, name) if name.endswith(".toml") else _read_yaml(text, name)
    return policy_from_mapping(document, name=name)


def policy_from_mapping(document: object, *, name: str) -> Policy:
    """Build a policy from an already-decoded document (a mapping of plain values)."""
    if not isinstance(document, Mapping):
        raise InputError(
            "policy.not_a_table",
            f"policy {name}: the top level must be a table of fields, not "
            f"{type(document).__name__}",
        )
    try:
        return Policy.model_validate(dict(document))
    except ValidationError as e:
        raise _input_error(e, name) from None


def _read_toml(text: str, name: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except (ValueError, RecursionError) as e:  # TOMLDecodeError is a ValueError
        raise InputError("policy.syntax_invalid", f"policy {name}: not valid TOML: {e}") from e


class _StrictSafeLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases, merge keys or duplicate keys."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.YAMLError(f"aliases are not allowed here{event.start_mark}")
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        keys: set[Hashable] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise yaml.constructor.ConstructorError(
                    None, None, "merge keys are not allowed here", key_node.start_mark
                )
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable):
                if key in keys:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}", key_node.start_mark
                    )
                keys.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(text: str, name: str) -> object:
    try:
        return yaml.load(text, Loader=_StrictSafeLoader)  # noqa: S506 (a SafeLoader subclass)
    except (yaml.YAMLError, ValueError, RecursionError) as e:
        raise InputError("policy.syntax_invalid", f"policy {name}: not valid YAML: {e}") from e


#: For other strict YAML readers (scenario files): the same loader and error paths.
StrictSafeLoader = _StrictSafeLoader


def _path(location: tuple[int | str, ...]) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


error_path = _path


def _input_error(error: ValidationError, name: str) -> InputError:
    details = error.errors(include_url=False)
    first: ErrorDetails = details[0]
    context = first.get("ctx") or {}
    location: tuple[int | str, ...] = tuple(first["loc"])
    extra = context.get("field")
    path = ".".join(p for p in (_path(location), extra) if p) or "(document)"
    kind = first["type"]
    reason = _REASONS.get(kind, f"policy.{kind}" if "detail" in context else "policy.field_invalid")
    if kind == "missing" and location and location[-1] == "citation":
        reason = "policy.citation_missing"
    message = context.get("detail") or _plain(first["msg"])
    if kind == "extra_forbidden":
        message = "unknown field"
    more = f" (and {len(details) - 1} more problems)" if len(details) > 1 else ""
    return InputError(reason, f"policy {name}: {path}: {message}{more}")


def _plain(message: str) -> str:
    return message[:1].lower() + message[1:]


@cache
def preset_names() -> tuple[str, ...]:
    """The names of the shipped presets (``eu-ai-act``, ``us-eo-14110``...), sorted."""
    folder = resources.files("brakepedal.policy").joinpath(_PRESETS)
    return tuple(
        sorted(
            entry.name.removesuffix(".toml")
            for entry in folder.iterdir()
            if entry.name.endswith(".toml")
        )
    )


@cache
def load_preset(name: str) -> Policy:
    """The shipped preset called ``name``.

    Raises:
        InputError: ``policy.preset_unknown``, listing the presets there are.
    """
    if name not in preset_names():
        raise InputError(
            "policy.preset_unknown",
            f"no policy preset {name!r}; the presets are {', '.join(preset_names())}",
            remediation="Run `brakepedal policy presets` for the presets, or pass a policy file.",
        )
    data = resources.files("brakepedal.policy").joinpath(_PRESETS, f"{name}.toml").read_bytes()
    return parse_policy(data, name=f"{name}.toml")
