"""Design specs: what to optimize (objectives) and what must hold (constraints), as a versioned
JSON/YAML document with validation that names the offending field.

Units follow the canonical property names (core/properties.py): eV, eV/atom, GPa, Å, degrees.
"""

from __future__ import annotations

import json
import math
import reprlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pymatgen.core import Element

from crystal_studio.core.errors import CrystalStudioError, InvalidRecordError
from crystal_studio.core.io import read_regular
from crystal_studio.core.properties import UNITS, unit_of

SPEC_VERSION = 1
OBJECTIVE_KINDS = ("target", "below", "above", "minimize", "maximize")
TEMPLATE_KINDS = ("perovskite", "free")
PEROVSKITE_SITES = ("A", "B", "X")
MAX_SPEC_BYTES = 2**20  # a spec is a few hundred bytes; anything bigger is not one


class SpecError(CrystalStudioError):
    """A spec document is invalid; the message lists every problem with its field path."""

    def __init__(self, problems: list[str], source: str = "spec"):
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


@dataclass
class Objective:
    """One property goal. ``target``: |p − value| ≤ tolerance; ``below``: p < value; ``above``:
    p > value; ``minimize``/``maximize``: no pass/fail criterion, only a direction."""

    property: str
    kind: str
    value: float | None = None
    tolerance: float = 0.0
    weight: float = 1.0

    @property
    def has_criterion(self) -> bool:
        return self.kind in ("target", "below", "above")

    @property
    def criterion_name(self) -> str:
        return f"{self.property}_{self.kind}"

    def passes(self, value: float) -> bool:
        """Whether ``value`` satisfies this objective's criterion (always True without one)."""
        if self.kind == "target":
            return abs(value - self.value) <= self.tolerance
        if self.kind == "below":
            return value < self.value
        if self.kind == "above":
            return value > self.value
        return True

    def describe(self) -> str:
        unit = unit_of(self.property)
        unit = f" {unit}" if unit else ""
        if self.kind == "target":
            return f"{self.property} = {self.value:g} ± {self.tolerance:g}{unit}"
        if self.kind in ("below", "above"):
            return f"{self.property} {'<' if self.kind == 'below' else '>'} {self.value:g}{unit}"
        return f"{self.kind} {self.property}"


@dataclass
class Template:
    """Structure template. ``perovskite``: ABX3, 5-atom cubic cell repeated ``supercell``³ times,
    fractional coordinates kept within ``coordinate_tolerance`` of the ideal sites and angles inside
    ``angle_window`` (degrees). ``free``: any cell, starting from dataset structures."""

    kind: str = "perovskite"
    supercell: int = 1
    coordinate_tolerance: float = 0.15
    angle_window: tuple[float, float] = (85.0, 95.0)


@dataclass
class Constraints:
    charge_neutral: bool = True
    template: Template = field(default_factory=Template)
    tolerance_factor: tuple[float, float] | None = None  # Goldschmidt t window (perovskites)
    min_distance: float = 0.5  # Å
    allowed_elements: list[str] | None = None
    forbidden_elements: list[str] = field(default_factory=list)
    site_elements: dict[str, list[str]] = field(default_factory=dict)  # perovskite site -> allowed
    natoms: tuple[int, int] | None = None  # (min, max) atoms per cell, free template
    formula: str | None = None  # fixed composition (reduced formula) of structure prediction: every candidate has it


@dataclass
class DesignSpec:
    name: str
    objectives: list[Objective]
    constraints: Constraints = field(default_factory=Constraints)
    description: str = ""
    version: int = SPEC_VERSION

    # ------------------------------------------------------------------ criteria

    def criteria_names(self) -> list[str]:
        """Every success criterion this spec implies, in report order."""
        names = [o.criterion_name for o in self.objectives if o.has_criterion]
        c = self.constraints
        if c.charge_neutral:
            names.append("charge_neutral")
        if c.template.kind == "perovskite":
            names.append("template_kept")
        if c.tolerance_factor is not None:
            names.append("tolerance_factor")
        names.append("min_distance")
        if c.allowed_elements or c.forbidden_elements or c.site_elements:
            names.append("elements_allowed")
        if c.formula:
            names.append("composition_kept")
        return names

    def summary(self) -> str:
        """Plain-language account of what will be optimized and what must hold."""
        goals = ", ".join(o.describe() for o in self.objectives)
        c = self.constraints
        musts = []
        if c.template.kind == "perovskite":
            n = c.template.supercell
            cell = "ABX3 perovskite" + (f" {n}×{n}×{n} supercell" if n > 1 else " (5 atoms)")
            musts.append(f"stay a {cell} (coordinates within ±{c.template.coordinate_tolerance:g}, "
                         f"angles {c.template.angle_window[0]:g}–{c.template.angle_window[1]:g}°)")
        if c.charge_neutral:
            musts.append("be charge neutral")
        if c.tolerance_factor:
            musts.append(f"have a tolerance factor in [{c.tolerance_factor[0]:g}, {c.tolerance_factor[1]:g}]")
        musts.append(f"keep atoms at least {c.min_distance:g} Å apart")
        if c.forbidden_elements:
            musts.append(f"avoid {', '.join(c.forbidden_elements)}")
        if c.formula:
            musts.append(f"have the composition {c.formula}")
        return f"Find crystals with {goals}. Candidates must {', '.join(musts)}."

    # ------------------------------------------------------------------ (de)serialization

    def to_dict(self) -> dict:
        """The JSON document :func:`spec_from_dict` reads back (unset constraints are left out)."""
        doc = asdict(self)
        doc["constraints"]["template"]["angle_window"] = list(self.constraints.template.angle_window)
        doc["constraints"] = {k: v for k, v in doc["constraints"].items() if v not in (None, [], {})}
        return {"version": doc.pop("version"), **doc}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")


def load_spec(path: str | Path, known_properties: set[str] | None = None) -> DesignSpec:
    """Read and validate a spec file (.json, .yaml or .yml)."""
    path = Path(path)
    try:
        text = read_regular(path, MAX_SPEC_BYTES).decode("utf-8")
    except InvalidRecordError as exc:
        raise SpecError([exc.reason], str(path)) from None
    except UnicodeDecodeError as exc:
        raise SpecError([f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"],
                        str(path)) from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            from ruamel.yaml import YAML

            doc = YAML(typ="safe").load(text)
        else:
            doc = json.loads(text)
    except Exception as exc:  # JSON and YAML parsers raise their own types
        raise SpecError([f"not valid {path.suffix.lstrip('.').upper() or 'JSON'} ({str(exc).splitlines()[0]})"],
                        str(path)) from None
    return spec_from_dict(doc, known_properties, source=str(path))


def spec_from_dict(doc: object, known_properties: set[str] | None = None, source: str = "spec") -> DesignSpec:
    """Validate a spec document; raises :class:`SpecError` listing every problem found.

    Types are strict: numbers are finite and within :data:`MAX_MAGNITUDE` (booleans are not numbers),
    flags are true/false, names are strings, lists and objects are what each field expects.
    """
    problems: list[str] = []
    if not isinstance(doc, dict):
        raise SpecError(["the document must be an object with 'name', 'objectives' and 'constraints'"], source)
    known = set(UNITS) | set(known_properties or ())
    version = doc.get("version", SPEC_VERSION)
    if isinstance(version, bool) or version != SPEC_VERSION:
        problems.append(f"version: {_show(version)} is not supported (this Crystal Studio reads version {SPEC_VERSION})")
    name = _string(doc.get("name"), "name", problems) or "untitled"
    description = _string(doc.get("description"), "description", problems)
    raw_objectives = _typed(doc.get("objectives"), list, "objectives", "a list of objects", problems) or []
    objectives = [_objective(o, f"objectives[{i}]", known, problems) for i, o in enumerate(raw_objectives)]
    if not objectives:
        problems.append("objectives: at least one objective is required")
    constraints = _constraints(_typed(doc.get("constraints"), dict, "constraints", "an object", problems) or {},
                               problems)
    if problems:
        raise SpecError(problems, source)
    return DesignSpec(name=name, objectives=[o for o in objectives if o], constraints=constraints,
                      description=description)


MAX_MAGNITUDE = 1e6
"""Largest magnitude of a number in a spec: no property value, tolerance or window comes near it, and
sums and products of such numbers stay finite in float32."""
MAX_WEIGHT = 1e3


def _show(value) -> str:
    """A short repr of a value for a message (a huge list or number is abbreviated)."""
    return reprlib.repr(value)


def _typed(value, kind: type, path: str, expected: str, problems: list[str]):
    """``value`` when it is a ``kind`` (None when absent or wrong, the latter a problem)."""
    if value is None or isinstance(value, kind):
        return value
    problems.append(f"{path}: expected {expected}, got {_show(value)}")
    return None


def _string(value, path: str, problems: list[str]) -> str:
    return _typed(value, str, path, "a string", problems) or ""


def _flag(value, path: str, problems: list[str], default: bool) -> bool:
    if isinstance(value, bool):
        return value
    problems.append(f"{path}: expected true or false, got {_show(value)}")
    return default


def _number(value, path: str, problems: list[str], lo: float = -MAX_MAGNITUDE, hi: float = MAX_MAGNITUDE,
            integer: bool = False) -> float | None:
    """``value`` as a finite float in [lo, hi] (an int with ``integer``); otherwise None and a problem."""
    kinds = int if integer else int | float
    if isinstance(value, bool) or not isinstance(value, kinds):
        problems.append(f"{path}: expected {'an integer' if integer else 'a number'}, got {_show(value)}")
        return None
    if isinstance(value, float) and not math.isfinite(value):
        problems.append(f"{path}: must be a finite number (got {value})")
        return None
    if not lo <= value <= hi:  # compared before float(): a 400-digit integer would overflow it
        problems.append(f"{path}: {_show(value)} is out of range [{lo:g}, {hi:g}]")
        return None
    return float(value)


def _objective(o, path: str, known: set[str], problems: list[str]) -> Objective | None:
    if not isinstance(o, dict):
        problems.append(f"{path}: expected an object, got {_show(o)}")
        return None
    prop, kind = o.get("property"), o.get("kind")
    ok = True
    if not isinstance(prop, str) or prop not in known:
        problems.append(f"{path}.property: unknown property {_show(prop)} (known: {', '.join(sorted(known))})")
        ok = False
    if not isinstance(kind, str) or kind not in OBJECTIVE_KINDS:
        problems.append(f"{path}.kind: {_show(kind)} is not one of {', '.join(OBJECTIVE_KINDS)}")
        return None
    value = None
    if kind in ("target", "below", "above"):
        if "value" not in o:
            problems.append(f"{path}.value: required for kind '{kind}'")
            ok = False
        else:
            value = _number(o["value"], f"{path}.value", problems)
            ok = ok and value is not None
    tolerance = _number(o.get("tolerance", 0.0), f"{path}.tolerance", problems)
    if tolerance is not None and tolerance < 0:
        problems.append(f"{path}.tolerance: must be ≥ 0 (got {tolerance:g})")
        ok = False
    if kind == "target" and tolerance == 0:
        problems.append(f"{path}.tolerance: a target needs a tolerance > 0 (e.g. 0.2)")
        ok = False
    weight = _number(o.get("weight", 1.0), f"{path}.weight", problems, lo=0, hi=MAX_WEIGHT)
    if weight is not None and weight <= 0:
        problems.append(f"{path}.weight: must be > 0 (got {weight:g})")
        ok = False
    if not ok or tolerance is None or weight is None:
        return None
    return Objective(prop, kind, value, tolerance, weight)


def _window(value, path: str, problems: list[str], integer: bool = False) -> tuple[float, float] | None:
    if not (isinstance(value, list | tuple) and len(value) == 2):
        problems.append(f"{path}: expected [min, max], got {_show(value)}")
        return None
    lo, hi = (_number(v, f"{path}[{i}]", problems, integer=integer) for i, v in enumerate(value))
    if lo is None or hi is None:
        return None
    if lo > hi:
        problems.append(f"{path}: min {lo:g} > max {hi:g}")
        return None
    return lo, hi


def _elements(value, path: str, problems: list[str]) -> list[str]:
    if not isinstance(value, list) or not value:
        problems.append(f"{path}: expected a non-empty list of element symbols, got {_show(value)}")
        return []
    bad = [v for v in value if not (isinstance(v, str) and Element.is_valid_symbol(v))]
    if bad:
        problems.append(f"{path}: unknown element(s) {', '.join(map(_show, bad))}")
    return [v for v in value if v not in bad]


def _constraints(c: dict, problems: list[str]) -> Constraints:
    out = Constraints()
    if "charge_neutral" in c:
        out.charge_neutral = _flag(c["charge_neutral"], "constraints.charge_neutral", problems, True)
    t = c.get("template", {})
    if isinstance(t, str):
        t = {"kind": t}
    t = _typed(t, dict, "constraints.template", "an object or a template name", problems) or {}
    kind = t.get("kind", "perovskite")
    if not isinstance(kind, str) or kind not in TEMPLATE_KINDS:
        problems.append(f"constraints.template.kind: {_show(kind)} is not one of {', '.join(TEMPLATE_KINDS)}")
        kind = "perovskite"
    supercell = t.get("supercell", 1)
    if isinstance(supercell, bool) or not isinstance(supercell, int) or not 1 <= supercell <= 4:
        problems.append(f"constraints.template.supercell: expected an integer 1–4 (got {_show(supercell)})")
        supercell = 1
    tol = _number(t.get("coordinate_tolerance", 0.15), "constraints.template.coordinate_tolerance", problems)
    if tol is not None and not 0 < tol <= 0.5:
        problems.append(f"constraints.template.coordinate_tolerance: must be in (0, 0.5] (got {tol:g})")
    angles = _window(t.get("angle_window", [85.0, 95.0]), "constraints.template.angle_window", problems)
    out.template = Template(kind, supercell, tol or 0.15, angles or (85.0, 95.0))
    if c.get("tolerance_factor") is not None:
        out.tolerance_factor = _window(c["tolerance_factor"], "constraints.tolerance_factor", problems)
    if "min_distance" in c:
        d = _number(c["min_distance"], "constraints.min_distance", problems)
        if d is not None and d <= 0:
            problems.append(f"constraints.min_distance: must be > 0 Å (got {d:g})")
        out.min_distance = d or 0.5
    if "allowed_elements" in c:
        out.allowed_elements = _elements(c["allowed_elements"], "constraints.allowed_elements", problems)
    if c.get("forbidden_elements"):
        out.forbidden_elements = _elements(c["forbidden_elements"], "constraints.forbidden_elements", problems)
    sites = _typed(c.get("site_elements"), dict, "constraints.site_elements", "an object", problems) or {}
    for site, elements in sites.items():
        if site not in PEROVSKITE_SITES:
            problems.append(f"constraints.site_elements.{site}: unknown site (use {', '.join(PEROVSKITE_SITES)})")
            continue
        out.site_elements[site] = _elements(elements, f"constraints.site_elements.{site}", problems)
    if out.allowed_elements is not None:
        clash = sorted(set(out.allowed_elements) & set(out.forbidden_elements))
        if clash:
            problems.append(f"constraints: {', '.join(clash)} both allowed and forbidden")
    if c.get("natoms") is not None:
        window = _window(c["natoms"], "constraints.natoms", problems, integer=True)
        if window is not None and window[0] < 1:
            problems.append(f"constraints.natoms: at least 1 atom (got {window[0]:g})")
            window = None
        out.natoms = (int(window[0]), int(window[1])) if window else None
    if c.get("formula") is not None:
        out.formula = _formula(c["formula"], problems)
    return out


def _formula(value, problems: list[str]) -> str | None:
    """The reduced formula of ``value`` (constraints.formula), or None with the problem recorded."""
    from pymatgen.core import Composition

    if not isinstance(value, str) or not value.strip():
        problems.append(f"constraints.formula: expected a chemical formula, got {_show(value)}")
        return None
    try:
        composition = Composition(value)
        if composition.num_atoms <= 0 or not all(isinstance(e, Element) for e in composition.elements):
            raise ValueError("no atoms of known elements")
    except Exception as exc:  # pymatgen raises ValueError, KeyError, ... for bad formula text
        problems.append(f"constraints.formula: {_show(value)} is not a chemical formula ({exc})")
        return None
    return composition.reduced_formula
