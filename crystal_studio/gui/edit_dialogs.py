"""The questions rename and delete actions ask: a new name, and "delete this?" with what goes with it.

They live here, called through this module, so tests can answer them (monkeypatch :func:`ask_name` and
:func:`confirm_delete`) instead of meeting a modal dialog.
"""

from __future__ import annotations

from PySide6.QtWidgets import QInputDialog, QLineEdit, QMessageBox, QWidget


def ask_name(parent: QWidget | None, title: str, label: str, text: str = "") -> str | None:
    """The text the user entered (None when cancelled)."""
    name, ok = QInputDialog.getText(parent, title, label, QLineEdit.EchoMode.Normal, text)
    return name if ok else None


def confirm_delete(parent: QWidget | None, title: str, text: str, details: str = "") -> bool:
    """Whether the user confirmed a deletion; Cancel is the default button."""
    box = QMessageBox(QMessageBox.Icon.Warning, title, text, QMessageBox.StandardButton.NoButton, parent)
    if details:
        box.setInformativeText(details)
    delete = box.addButton("Delete", QMessageBox.ButtonRole.DestructiveRole)
    cancel = box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(cancel)
    box.setEscapeButton(cancel)
    box.exec()
    return box.clickedButton() is delete
