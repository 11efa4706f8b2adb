"""Policy documents as plain data, and writers for the two file formats.

``to_toml`` is a tiny TOML writer for exactly the shapes a policy has (scalars, lists of
scalars, tables, arrays of tables, inline tables one level down); the standard library reads
TOML but does not write it.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import yaml

Document = dict[str, Any]

MINIMAL: Document = {
    "format": "brakepedal.policy",
    "id": "minimal",
    "version": 1,
    "title": "Minimal policy",
    "status": "in_force",
    "jurisdiction": "test",
    "sources": [{"id": "src", "title": "A source", "url": "https://example.org/source"}],
    "accounting": {"precisions": ["bf16", "fp8"]},
    "rules": [
        {
            "id": "notify-1e25",
            "title": "Notify above 1e25",
            "citation": {"source": "src", "pinpoint": "Art. 1"},
            "kind": "notify",
            "subject": "lineage",
            "threshold_flop": "1e25",
            "notify_within_days": 14,
        }
    ],
}


def minimal() -> Document:
    """A fresh copy of :data:`MINIMAL` to change."""
    return copy.deepcopy(MINIMAL)


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_scalar(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_scalar(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")


def _key(key: str) -> str:
    bare = key and all(c.isascii() and (c.isalnum() or c in "-_") for c in key)
    return key if bare else json.dumps(key)


def _is_table_array(value: object) -> bool:
    return (
        isinstance(value, list | tuple) and bool(value) and all(isinstance(v, dict) for v in value)
    )


def to_toml(document: Document) -> str:
    """``document`` as TOML text."""
    lines = [
        f"{_key(k)} = {_scalar(v)}"
        for k, v in document.items()
        if v is not None and not isinstance(v, dict) and not _is_table_array(v)
    ]
    for key, value in document.items():
        if isinstance(value, dict):
            lines.append(f"\n[{_key(key)}]")
            lines.extend(f"{_key(k)} = {_scalar(v)}" for k, v in value.items() if v is not None)
        elif _is_table_array(value):
            for table in value:
                lines.append(f"\n[[{_key(key)}]]")
                lines.extend(f"{_key(k)} = {_scalar(v)}" for k, v in table.items() if v is not None)
    return "\n".join(lines) + "\n"


def to_yaml(document: Document) -> str:
    """``document`` as YAML text."""
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def encode(document: Document, name: str) -> bytes:
    """``document`` in the format ``name``'s suffix names."""
    text = to_toml(document) if name.endswith(".toml") else to_yaml(document)
    return text.encode()
