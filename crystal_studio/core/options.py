"""Options of methods and model kinds as dataclass fields that describe themselves.

A settings dataclass declares each field with :func:`option`, giving its help text, unit and allowed
range or choices. :func:`describe_options` turns the class into the list the CLI prints
(``crystal-studio methods``), ``--set NAME=VALUE`` checks against, and the GUI builds its forms from.
"""

from __future__ import annotations

from dataclasses import MISSING, field, fields
from typing import Any


def option(default: Any, help: str, unit: str = "", minimum: float | None = None,  # noqa: A002 (help is the word)
           maximum: float | None = None, choices: tuple[str, ...] | None = None) -> Any:
    """A dataclass field with ``default`` and the metadata :func:`describe_options` reports."""
    return field(default=default, metadata={"help": help, "unit": unit, "minimum": minimum, "maximum": maximum,
                                            "choices": choices})


def describe_options(cls: type | None) -> list[dict]:
    """Every option of the settings dataclass ``cls``: name, type, default, help, unit, minimum,
    maximum and choices (empty for None: a method without settings)."""
    if cls is None:
        return []
    out = []
    for f in fields(cls):
        meta = f.metadata
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else None)
        out.append({"name": f.name, "type": str(f.type), "default": default, "help": meta.get("help", ""),
                    "unit": meta.get("unit", ""), "minimum": meta.get("minimum"), "maximum": meta.get("maximum"),
                    "choices": list(meta["choices"]) if meta.get("choices") else None})
    return out


def range_problems(config: Any) -> list[str]:
    """Values of ``config`` outside the minimum/maximum/choices their options declare."""
    problems = []
    for f in fields(config):
        value, meta = getattr(config, f.name), f.metadata
        if value is None or isinstance(value, bool):
            continue
        if meta.get("choices") and value not in meta["choices"]:
            problems.append(f"{f.name} must be one of {', '.join(meta['choices'])} (got '{value}')")
        elif isinstance(value, int | float):
            if meta.get("minimum") is not None and value < meta["minimum"]:
                problems.append(f"{f.name} must be at least {meta['minimum']} (got {value})")
            if meta.get("maximum") is not None and value > meta["maximum"]:
                problems.append(f"{f.name} must be at most {meta['maximum']} (got {value})")
    return problems
