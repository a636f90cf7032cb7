"""Help → User guide: the bundled ``docs/user-guide.md`` rendered in a dialog, images beside it."""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QByteArray, QUrl
from PySide6.QtGui import QImage, QTextDocument
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout, QWidget


def docs_dir() -> Path:
    """The docs folder: beside the package in a source checkout, at the bundle's root in the
    PyInstaller build (the spec ships ``docs/`` as data)."""
    if getattr(sys, "frozen", False):
        return Path(sys._MEIPASS) / "docs"  # noqa: SLF001 - PyInstaller's bundle folder
    return Path(__file__).resolve().parents[2] / "docs"


def user_guide_path() -> Path:
    return docs_dir() / "user-guide.md"


class UserGuideDialog(QDialog):
    """The user guide in a :class:`QTextBrowser`; relative image paths resolve against the guide's
    folder, web links open in the system browser."""

    def __init__(self, path: Path | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.path = path or user_guide_path()
        self.setWindowTitle("Crystal Studio — User guide")
        self.resize(900, 760)
        self.browser = QTextBrowser()
        self.browser.setOpenExternalLinks(True)
        self.browser.setSearchPaths([str(self.path.parent)])
        if self.path.is_file():
            self.browser.setSource(QUrl.fromLocalFile(str(self.path)), QTextDocument.ResourceType.MarkdownResource)
        else:
            self.browser.setMarkdown(f"# User guide not found\n\nThis installation has no `{self.path}`.")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.browser, 1)
        layout.addWidget(buttons)

    def image_names(self) -> list[str]:
        """The image paths the shown document refers to, in order."""
        names = []
        block = self.browser.document().begin()
        while block.isValid():
            it = block.begin()
            while not it.atEnd():
                fmt = it.fragment().charFormat()
                if fmt.isImageFormat():
                    names.append(fmt.toImageFormat().name())
                it += 1
            block = block.next()
        return names

    def image(self, name: str) -> QImage:
        """The image ``name`` as the browser finds it (a null image when it cannot)."""
        data = self.browser.loadResource(QTextDocument.ResourceType.ImageResource.value, QUrl(name))
        if isinstance(data, QByteArray):
            return QImage.fromData(data)
        return QImage(data) if data is not None else QImage()
