"""Targets panel: a form editor for the design spec, with live validation and the shipped examples.

The form is turned into the JSON document of :mod:`crystal_studio.design.spec` on every edit and
validated with :func:`~crystal_studio.design.spec.spec_from_dict`; the problems it lists appear under
the form (and the offending cells turn red), otherwise the spec's plain-language summary does. The
current valid spec is :attr:`TargetsPanel.spec` and every change is announced by
:attr:`TargetsPanel.spec_changed` (None while the form is invalid).

When the composition is known and only its crystal structure is wanted, **Predict the structure of a
composition…** asks (:attr:`TargetsPanel.structure_prediction_requested`) for the Generate panel's
Structure prediction tab.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from crystal_studio.core.paths import RESOURCES
from crystal_studio.core.properties import UNITS, unit_of
from crystal_studio.design.spec import OBJECTIVE_KINDS, TEMPLATE_KINDS, DesignSpec, SpecError, spec_from_dict
from crystal_studio.gui.jobs import show_error

SPECS_DIR = RESOURCES / "specs"
SPEC_FILTER = "Design specs (*.json *.yaml *.yml);;All files (*)"
BAD = QColor(255, 205, 205)
COL_PROPERTY, COL_KIND, COL_VALUE, COL_TOLERANCE, COL_WEIGHT = range(5)
OBJECTIVE_FIELDS = {"property": COL_PROPERTY, "kind": COL_KIND, "value": COL_VALUE, "tolerance": COL_TOLERANCE,
                    "weight": COL_WEIGHT}
_OBJECTIVE_PROBLEM = re.compile(r"objectives\[(\d+)\]\.(\w+)")


def example_specs() -> list[tuple[str, Path]]:
    """(display name, path) of the specs shipped in resources/specs."""
    out = []
    for path in sorted(SPECS_DIR.glob("*.json")):
        try:
            name = json.loads(path.read_text(encoding="utf-8")).get("name") or path.stem
        except (OSError, ValueError):
            name = path.stem
        out.append((str(name), path))
    return out


def read_spec_document(path: str | Path) -> dict:
    """The raw document of a spec file (JSON or YAML), unvalidated; SpecError if unreadable."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() in (".yaml", ".yml"):
            from ruamel.yaml import YAML

            doc = YAML(typ="safe").load(text)
        else:
            doc = json.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([f"cannot read file ({exc})"], str(path)) from None
    except Exception as exc:  # noqa: BLE001 - JSON and YAML parsers raise their own types
        raise SpecError([f"not a valid spec document ({str(exc).splitlines()[0]})"], str(path)) from None
    if not isinstance(doc, dict):
        raise SpecError(["the document must be an object with 'name', 'objectives' and 'constraints'"], str(path))
    return doc


def _number_text(value) -> str:
    return "" if value is None else f"{value:g}" if isinstance(value, int | float) else str(value)


def _parse_number(text: str):
    """A float for numeric text, the text itself otherwise (so validation names it), None when empty."""
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return text


def _split_elements(text: str) -> list[str]:
    return [t for t in re.split(r"[\s,;]+", text.strip()) if t]


class TargetsPanel(QWidget):
    """Form editor of a :class:`~crystal_studio.design.spec.DesignSpec`; see the module docstring."""

    spec_changed = Signal(object)  # DesignSpec, or None while the form has problems
    structure_prediction_requested = Signal()  # the user wants the structure of a given composition

    def __init__(self, parent: QWidget | None = None, settings: QSettings | None = None):
        super().__init__(parent)
        self.settings = settings
        self.spec: DesignSpec | None = None
        self.problems: list[str] = []
        self.path: Path | None = None  # the file last loaded or saved
        self.known_properties: set[str] = set()
        self._passthrough: dict = {}  # spec fields the form does not edit (site_elements, natoms)
        self._loading = False
        self._validate_timer = QTimer(self, singleShot=True, interval=150)
        self._validate_timer.timeout.connect(self.validate)

        # ---- file row
        self.example_combo = QComboBox()
        self.example_combo.setObjectName("exampleCombo")
        self.example_combo.addItem("Examples…", None)
        for name, path in example_specs():
            self.example_combo.addItem(name, str(path))
            self.example_combo.setItemData(self.example_combo.count() - 1, str(path), Qt.ItemDataRole.ToolTipRole)
        self.example_combo.activated.connect(self._example_chosen)
        self.load_button = QPushButton("Load…")
        self.load_button.clicked.connect(self.load_dialog)
        self.save_button = QPushButton("Save…")
        self.save_button.clicked.connect(self.save_dialog)
        file_row = QHBoxLayout()
        file_row.addWidget(self.example_combo, 1)
        file_row.addWidget(self.load_button)
        file_row.addWidget(self.save_button)

        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("name of this design goal")
        self.description_edit = QLineEdit()
        self.description_edit.setPlaceholderText("optional description")
        head = QFormLayout()
        head.addRow("Name", self.name_edit)
        head.addRow("Description", self.description_edit)

        # ---- objectives
        self.objectives = QTableWidget(0, 5)
        self.objectives.setObjectName("objectivesTable")
        self.objectives.setHorizontalHeaderLabels(["Property", "Kind", "Value", "Tolerance", "Weight"])
        header = self.objectives.horizontalHeader()
        header.setSectionResizeMode(COL_PROPERTY, QHeaderView.ResizeMode.Stretch)
        for col in (COL_KIND, COL_VALUE, COL_TOLERANCE, COL_WEIGHT):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self.objectives.verticalHeader().setVisible(False)
        self.objectives.setMinimumHeight(110)
        self.objectives.itemChanged.connect(lambda _item: self._changed())
        self.add_button = QPushButton("+ Objective")
        self.add_button.clicked.connect(lambda: self.add_objective())
        self.remove_button = QPushButton("− Remove")
        self.remove_button.clicked.connect(self.remove_selected_objectives)
        obj_buttons = QHBoxLayout()
        obj_buttons.addWidget(self.add_button)
        obj_buttons.addWidget(self.remove_button)
        obj_buttons.addStretch(1)
        obj_box = QGroupBox("Objectives")
        obj_layout = QVBoxLayout(obj_box)
        obj_layout.addWidget(self.objectives)
        obj_layout.addLayout(obj_buttons)

        # ---- constraints
        self.charge_neutral = QCheckBox("Charge neutral")
        self.template_combo = QComboBox()
        self.template_combo.addItems(list(TEMPLATE_KINDS))
        self.supercell = QSpinBox()
        self.supercell.setRange(1, 4)
        self.supercell.setSuffix("³")
        self.coordinate_tolerance = QDoubleSpinBox()
        self.coordinate_tolerance.setRange(0.01, 0.5)
        self.coordinate_tolerance.setSingleStep(0.01)
        self.coordinate_tolerance.setDecimals(3)
        self.angle_min, self.angle_max = QDoubleSpinBox(), QDoubleSpinBox()
        for spin in (self.angle_min, self.angle_max):
            spin.setRange(30.0, 150.0)
            spin.setSuffix("°")
            spin.setDecimals(1)
        self.tf_enabled = QCheckBox("Tolerance factor in")
        self.tf_min, self.tf_max = QDoubleSpinBox(), QDoubleSpinBox()
        for spin in (self.tf_min, self.tf_max):
            spin.setRange(0.3, 2.0)
            spin.setSingleStep(0.05)
            spin.setDecimals(3)
        self.min_distance = QDoubleSpinBox()
        self.min_distance.setRange(0.01, 5.0)
        self.min_distance.setSingleStep(0.1)
        self.min_distance.setSuffix(" Å")
        self.allowed_edit = QLineEdit()
        self.allowed_edit.setPlaceholderText("any (e.g. Sr Ba Ti Zr O)")
        self.forbidden_edit = QLineEdit()
        self.forbidden_edit.setPlaceholderText("none (e.g. Pb Cd Hg Tl)")
        self.passthrough_label = QLabel("")
        self.passthrough_label.setStyleSheet("color: #666;")
        self.passthrough_label.setWordWrap(True)

        template_row = QHBoxLayout()
        template_row.addWidget(self.template_combo)
        template_row.addWidget(QLabel("supercell"))
        template_row.addWidget(self.supercell)
        coord_row = QHBoxLayout()
        coord_row.addWidget(QLabel("±"))
        coord_row.addWidget(self.coordinate_tolerance)
        coord_row.addWidget(QLabel("angles"))
        coord_row.addWidget(self.angle_min)
        coord_row.addWidget(QLabel("–"))
        coord_row.addWidget(self.angle_max)
        tf_row = QHBoxLayout()
        tf_row.addWidget(self.tf_enabled)
        tf_row.addWidget(self.tf_min)
        tf_row.addWidget(QLabel("–"))
        tf_row.addWidget(self.tf_max)
        tf_row.addStretch(1)
        cons_box = QGroupBox("Constraints")
        cons = QFormLayout(cons_box)
        cons.addRow(self.charge_neutral)
        cons.addRow("Template", template_row)
        cons.addRow("Coordinates", coord_row)
        cons.addRow(tf_row)
        cons.addRow("Min. distance", self.min_distance)
        cons.addRow("Allowed elements", self.allowed_edit)
        cons.addRow("Forbidden elements", self.forbidden_edit)
        cons.addRow(self.passthrough_label)

        # ---- validation and summary
        self.problems_label = QLabel("")
        self.problems_label.setObjectName("specProblems")
        self.problems_label.setWordWrap(True)
        self.problems_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.problems_label.setStyleSheet("color: #b00020;")
        self.summary_label = QLabel("")
        self.summary_label.setObjectName("specSummary")
        self.summary_label.setWordWrap(True)
        self.summary_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.summary_label.setStyleSheet("QLabel { background: #eef5ee; border: 1px solid #b5d3b5; padding: 6px; }")

        # ---- a known composition: structure prediction instead of a design goal
        self.csp_button = QPushButton("Predict the structure of a composition…")
        self.csp_button.setObjectName("predictCompositionStructure")
        self.csp_button.setToolTip("Know the formula already? Find its lowest-energy crystal structure (random "
                                   "search or LCOMs, relaxed with CHGNet) in the Generate panel's Structure "
                                   "prediction tab")
        self.csp_button.clicked.connect(self.structure_prediction_requested)
        csp_row = QHBoxLayout()
        csp_row.addWidget(self.csp_button)
        csp_row.addStretch(1)

        body = QWidget()
        layout = QVBoxLayout(body)
        layout.addLayout(file_row)
        layout.addLayout(head)
        layout.addWidget(obj_box)
        layout.addWidget(cons_box)
        layout.addWidget(self.problems_label)
        layout.addWidget(self.summary_label)
        layout.addLayout(csp_row)
        layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(body)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

        for widget in (self.name_edit, self.description_edit, self.allowed_edit, self.forbidden_edit):
            widget.textChanged.connect(self._changed)
        for spin in (self.supercell, self.coordinate_tolerance, self.angle_min, self.angle_max, self.tf_min,
                     self.tf_max, self.min_distance):
            spin.valueChanged.connect(self._changed)
        for box in (self.charge_neutral, self.tf_enabled):
            box.toggled.connect(self._changed)
        self.template_combo.currentTextChanged.connect(self._changed)
        self.tf_enabled.toggled.connect(self._sync_enabled)
        self.template_combo.currentTextChanged.connect(self._sync_enabled)

        last = self.settings.value("targets/last", "", str) if self.settings is not None else ""
        start = Path(last) if last and Path(last).is_file() else None
        examples = example_specs()
        try:
            if start is not None:
                self.set_document(read_spec_document(start))
                self.path = start
            elif examples:
                self.set_document(read_spec_document(examples[0][1]))
        except SpecError:
            self.set_document(read_spec_document(examples[0][1]) if examples else {"objectives": []})

    # ---------------------------------------------------------------- project

    def set_known_properties(self, names) -> None:
        """Extra property names (e.g. the targets of the project's models) offered and accepted."""
        self.known_properties = set(names)
        for row in range(self.objectives.rowCount()):
            combo = self.objectives.cellWidget(row, COL_PROPERTY)
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(self._property_names())
            combo.setCurrentText(current)
            combo.blockSignals(False)
        self.validate()

    def _property_names(self) -> list[str]:
        return sorted(set(UNITS) | self.known_properties)

    # ---------------------------------------------------------------- objectives table

    def add_objective(self, objective: dict | None = None) -> int:
        """Append an objective row (from a spec document's objective dict); returns its row."""
        o = objective or {"property": "band_gap", "kind": "target", "value": 1.0, "tolerance": 0.2, "weight": 1.0}
        row = self.objectives.rowCount()
        self.objectives.blockSignals(True)
        self.objectives.insertRow(row)
        prop = QComboBox()
        prop.setEditable(True)
        prop.addItems(self._property_names())
        prop.setCurrentText(str(o.get("property", "")))
        prop.currentTextChanged.connect(self._changed)
        kind = QComboBox()
        kind.addItems(list(OBJECTIVE_KINDS))
        if o.get("kind") in OBJECTIVE_KINDS:
            kind.setCurrentText(o["kind"])
        else:
            kind.addItem(str(o.get("kind")))
            kind.setCurrentIndex(kind.count() - 1)
        kind.currentTextChanged.connect(self._changed)
        self.objectives.setCellWidget(row, COL_PROPERTY, prop)
        self.objectives.setCellWidget(row, COL_KIND, kind)
        for col, key, default in ((COL_VALUE, "value", None), (COL_TOLERANCE, "tolerance", 0.0),
                                  (COL_WEIGHT, "weight", 1.0)):
            item = QTableWidgetItem(_number_text(o.get(key, default)))
            item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.objectives.setItem(row, col, item)
        self.objectives.blockSignals(False)
        self._changed()
        return row

    def remove_selected_objectives(self) -> None:
        rows = sorted({i.row() for i in self.objectives.selectedIndexes()}
                      | ({self.objectives.currentRow()} if self.objectives.currentRow() >= 0 else set()),
                      reverse=True)
        for row in rows:
            self.objectives.removeRow(row)
        self._changed()

    def set_objective_text(self, row: int, field: str, text: str) -> None:
        """Set a cell of the objectives table as if typed (``field``: property, kind, value, tolerance, weight)."""
        col = OBJECTIVE_FIELDS[field]
        widget = self.objectives.cellWidget(row, col)
        if isinstance(widget, QComboBox):
            widget.setCurrentText(text)
        else:
            self.objectives.item(row, col).setText(text)

    def _objective_docs(self) -> list[dict]:
        docs = []
        for row in range(self.objectives.rowCount()):
            o = {"property": self.objectives.cellWidget(row, COL_PROPERTY).currentText().strip(),
                 "kind": self.objectives.cellWidget(row, COL_KIND).currentText()}
            for col, key in ((COL_VALUE, "value"), (COL_TOLERANCE, "tolerance"), (COL_WEIGHT, "weight")):
                item = self.objectives.item(row, col)
                value = _parse_number(item.text() if item else "")
                if value is not None:
                    o[key] = value
            docs.append(o)
        return docs

    # ---------------------------------------------------------------- document <-> form

    def document(self) -> dict:
        """The spec document the form describes (valid or not)."""
        constraints: dict = {
            "charge_neutral": self.charge_neutral.isChecked(),
            "template": {"kind": self.template_combo.currentText(), "supercell": self.supercell.value(),
                         "coordinate_tolerance": round(self.coordinate_tolerance.value(), 6),
                         "angle_window": [self.angle_min.value(), self.angle_max.value()]},
            "min_distance": round(self.min_distance.value(), 6),
        }
        if self.tf_enabled.isChecked():
            constraints["tolerance_factor"] = [round(self.tf_min.value(), 6), round(self.tf_max.value(), 6)]
        allowed = _split_elements(self.allowed_edit.text())
        if allowed:
            constraints["allowed_elements"] = allowed
        forbidden = _split_elements(self.forbidden_edit.text())
        if forbidden:
            constraints["forbidden_elements"] = forbidden
        constraints.update(self._passthrough)
        doc = {"version": 1, "name": self.name_edit.text().strip() or "untitled", "objectives": self._objective_docs(),
               "constraints": constraints}
        if self.description_edit.text().strip():
            doc["description"] = self.description_edit.text().strip()
        return doc

    def set_document(self, doc: dict) -> None:
        """Fill the form from a spec document (problems in it are shown, not raised)."""
        self._loading = True
        try:
            self.name_edit.setText(str(doc.get("name") or ""))
            self.description_edit.setText(str(doc.get("description") or ""))
            self.objectives.setRowCount(0)
            for o in doc.get("objectives") or []:
                self.add_objective(o if isinstance(o, dict) else {})
            c = doc.get("constraints") or {}
            c = c if isinstance(c, dict) else {}
            self.charge_neutral.setChecked(bool(c.get("charge_neutral", True)))
            t = c.get("template", {})
            t = {"kind": t} if isinstance(t, str) else (t if isinstance(t, dict) else {})
            self.template_combo.setCurrentText(str(t.get("kind", "perovskite")))
            self.supercell.setValue(int(t.get("supercell", 1)) if isinstance(t.get("supercell", 1), int) else 1)
            self.coordinate_tolerance.setValue(float(t.get("coordinate_tolerance", 0.15)))
            angles = t.get("angle_window", [85.0, 95.0])
            self.angle_min.setValue(float(angles[0]))
            self.angle_max.setValue(float(angles[1]))
            tf = c.get("tolerance_factor")
            self.tf_enabled.setChecked(tf is not None)
            tf = tf or [0.8, 1.0]
            self.tf_min.setValue(float(tf[0]))
            self.tf_max.setValue(float(tf[1]))
            self.min_distance.setValue(float(c.get("min_distance", 0.5)))
            self.allowed_edit.setText(" ".join(map(str, c.get("allowed_elements") or [])))
            self.forbidden_edit.setText(" ".join(map(str, c.get("forbidden_elements") or [])))
            self._passthrough = {k: c[k] for k in ("site_elements", "natoms") if c.get(k)}
        except (TypeError, ValueError, IndexError, KeyError):
            pass  # a malformed field keeps the form's default; validation reports the document's shape
        finally:
            self._loading = False
        text = "; ".join(f"{k}: {json.dumps(v)}" for k, v in self._passthrough.items())
        self.passthrough_label.setText(f"Also kept from the file: {text}" if text else "")
        self.passthrough_label.setVisible(bool(text))
        self._sync_enabled()
        self.validate()

    def load_example(self, name_or_path: str) -> None:
        """Load a shipped example by its display name, file name or path."""
        for name, path in example_specs():
            if name_or_path in (name, path.name, path.stem, str(path)):
                self.load(path)
                return
        raise SpecError([f"no example spec named {name_or_path!r}"], "examples")

    def load(self, path: str | Path) -> None:
        """Read a spec file into the form (raises SpecError when the file is not a spec document)."""
        self.set_document(read_spec_document(path))
        self.path = Path(path)
        self._remember(self.path)

    def save(self, path: str | Path) -> None:
        """Write the current spec (must be valid) to ``path`` as JSON."""
        if self.spec is None:
            raise SpecError(self.problems or ["the spec is not valid"], "cannot save")
        self.spec.save(path)
        self.path = Path(path)
        self._remember(self.path)

    def _remember(self, path: Path) -> None:
        if self.settings is not None and path.parent.resolve() != SPECS_DIR.resolve():
            self.settings.setValue("targets/last", str(path.resolve()))

    def _example_chosen(self, index: int) -> None:
        path = self.example_combo.itemData(index)
        if path:
            self.load(path)
        self.example_combo.setCurrentIndex(0)

    def load_dialog(self) -> None:
        start = str(self.path.parent) if self.path else str(SPECS_DIR)
        path, _ = QFileDialog.getOpenFileName(self, "Load design spec", start, SPEC_FILTER)
        if path:
            try:
                self.load(path)
            except SpecError as exc:
                show_error(self, "Cannot load spec", str(exc))

    def save_dialog(self) -> None:
        if self.spec is None:
            show_error(self, "Cannot save spec", "Fix the problems listed under the form first:\n\n"
                       + "\n".join(self.problems))
            return
        stem = re.sub(r"[^\w.-]+", "_", self.spec.name).strip("_") or "spec"
        start = str((self.path.parent if self.path and self.path.parent != SPECS_DIR else Path.home()) / f"{stem}.json")
        path, _ = QFileDialog.getSaveFileName(self, "Save design spec", start, "JSON (*.json)")
        if path:
            try:
                self.save(path if path.endswith(".json") else path + ".json")
            except OSError as exc:
                show_error(self, "Cannot save spec", f"{path}: {exc}")

    # ---------------------------------------------------------------- validation

    def _sync_enabled(self) -> None:
        perovskite = self.template_combo.currentText() == "perovskite"
        for widget in (self.supercell, self.coordinate_tolerance, self.angle_min, self.angle_max):
            widget.setEnabled(perovskite)
        for widget in (self.tf_min, self.tf_max):
            widget.setEnabled(self.tf_enabled.isChecked())

    def _changed(self, *_args) -> None:
        if not self._loading:
            self._validate_timer.start()

    def validate(self) -> DesignSpec | None:
        """Validate the form now; updates the problems, the summary and :attr:`spec`; returns it."""
        self._validate_timer.stop()
        try:
            spec = spec_from_dict(self.document(), self.known_properties)
            problems: list[str] = []
        except SpecError as exc:
            spec, problems = None, exc.problems
        self.problems = problems
        self._mark_problems(problems)
        if problems:
            self.problems_label.setText("<b>Problems:</b><ul style='margin:0'>"
                                        + "".join(f"<li>{html.escape(p)}</li>" for p in problems) + "</ul>")
        self.problems_label.setVisible(bool(problems))
        if spec is not None:
            units = sorted({f"{o.property} in {unit_of(o.property)}" for o in spec.objectives if unit_of(o.property)})
            criteria = ", ".join(spec.criteria_names())
            self.summary_label.setText(f"<b>{html.escape(spec.name)}</b><br>{html.escape(spec.summary())}"
                                       f"<br><span style='color:#555'>Success criteria: {html.escape(criteria)}"
                                       + (f"<br>Units: {html.escape(', '.join(units))}" if units else "")
                                       + "</span>")
        else:
            self.summary_label.setText("<span style='color:#777'>The summary appears once the spec is valid.</span>")
        changed = (spec is None) != (self.spec is None) or (spec is not None and spec.to_dict() != self.spec.to_dict())
        self.spec = spec
        self.save_button.setEnabled(spec is not None)
        if changed:
            self.spec_changed.emit(spec)
        return spec

    def _mark_problems(self, problems: list[str]) -> None:
        bad_cells = set()
        for problem in problems:
            for m in _OBJECTIVE_PROBLEM.finditer(problem):
                if m.group(2) in OBJECTIVE_FIELDS:
                    bad_cells.add((int(m.group(1)), OBJECTIVE_FIELDS[m.group(2)]))
        self.objectives.blockSignals(True)
        for row in range(self.objectives.rowCount()):
            for col in range(5):
                bad = (row, col) in bad_cells
                item = self.objectives.item(row, col)
                if item is not None:
                    item.setData(Qt.ItemDataRole.BackgroundRole, BAD if bad else None)
                    item.setToolTip("\n".join(p for p in problems if f"objectives[{row}]" in p) if bad else "")
                widget = self.objectives.cellWidget(row, col)
                if widget is not None:
                    widget.setStyleSheet("background: #ffcdcd;" if bad else "")
        self.objectives.blockSignals(False)
        for edit, key in ((self.allowed_edit, "allowed_elements"), (self.forbidden_edit, "forbidden_elements")):
            msgs = [p for p in problems if key in p or ("both allowed and forbidden" in p)]
            edit.setStyleSheet("background: #ffcdcd;" if msgs else "")
            edit.setToolTip("\n".join(msgs))
