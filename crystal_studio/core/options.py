"""Options of methods and model kinds as dataclass fields that describe themselves.

A settings dataclass declares each field with :func:`option`, giving its help text, unit and allowed
range or choices. :func:`describe_options` turns the class into the list the CLI prints
(``crystal-studio methods``), ``--set NAME=VALUE`` checks against, and the GUI builds its forms from.
"""

from __future__ import annotations

from dataclasses import MISSING, field, fields, replace
from typing import Any

from crystal_studio.core.errors import CrystalStudioError


class OptionsError(CrystalStudioError):
    """Settings given on the command line or in a form are unknown or invalid; lists every problem."""

    def __init__(self, problems: list[str], source: str = "settings"):
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


def parse_assignments(pairs: list[str], flag: str = "--set") -> dict[str, str]:
    """``NAME=VALUE`` texts (as given to ``--set``) as a dict; values stay text for :func:`apply_options`."""
    settings = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise OptionsError([f"{flag} expects NAME=VALUE (got '{pair}')"], flag)
        settings[name.strip()] = value.strip()
    return settings


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


def apply_options(config, settings: dict[str, object] | None, owner: str):
    """A copy of the dataclass ``config`` with ``settings`` (name → value, values may be strings as typed
    on a command line: '0.5', 'true', 'paper', '0.25,0.5', 'none') applied and type-checked.

    Raises OptionsError naming the owner (method or model kind), the setting and the reason, listing the
    valid names for an unknown one; the config's own ``validate`` runs last.
    """
    if not settings:
        return config
    known = {f.name: f for f in fields(config)}
    changes, problems = {}, []
    for name, raw in settings.items():
        if name not in known:
            problems.append(f"{owner} has no setting '{name}' (settings: {', '.join(known)})")
            continue
        try:
            changes[name] = _coerce(raw, str(known[name].type))
        except ValueError as exc:
            problems.append(f"{owner} setting '{name}': {exc}")
    if problems:
        raise OptionsError(problems)
    result = replace(config, **changes)
    check = getattr(result, "validate", None)
    if check is not None:
        check()
    return result


def _coerce(raw, annotation: str):
    """``raw`` converted to the type a config field is annotated with (str annotations, PEP 563)."""
    optional = "None" in annotation
    if isinstance(raw, str):
        text = raw.strip()
        if optional and text.lower() in ("none", "null", "auto", ""):
            return None
        if annotation.startswith("tuple"):
            return tuple(float(v) for v in text.split(",") if v.strip())
        if annotation.startswith("bool"):
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"expected true or false, got '{raw}'")
        if annotation.startswith("int"):
            try:
                return int(text)
            except ValueError:
                raise ValueError(f"expected an integer, got '{raw}'") from None
        if annotation.startswith("float"):
            try:
                return float(text)
            except ValueError:
                raise ValueError(f"expected a number, got '{raw}'") from None
        return text
    if raw is None:
        if optional:
            return None
        raise ValueError("may not be empty")
    if annotation.startswith("tuple"):
        return tuple(float(v) for v in raw)
    if annotation.startswith("bool") and not isinstance(raw, bool):
        raise ValueError(f"expected true or false, got {raw!r}")
    if annotation.startswith(("int", "float")) and (isinstance(raw, bool) or not isinstance(raw, int | float)):
        raise ValueError(f"expected a number, got {raw!r}")
    if annotation.startswith("int"):
        if float(raw) != int(raw):
            raise ValueError(f"expected an integer, got {raw!r}")
        return int(raw)
    if annotation.startswith("float"):
        return float(raw)
    return raw
