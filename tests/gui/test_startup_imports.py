"""The first window waits for no heavy library it does not draw with (issue 15: importing torch for the
Optimization panel's settings form cost 1.4 s of a 2.9 s start-up)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = """
import json, sys
from PySide6.QtWidgets import QApplication
from crystal_studio.gui.main_window import MainWindow
from crystal_studio.design.methods import METHODS
app = QApplication([])
window = MainWindow(open_default=False)
for method in METHODS.values():  # every settings form the Optimization panel can show
    window.optimization_panel.method_combo.setCurrentIndex(window.optimization_panel.method_combo.findData(method.name))
print(json.dumps(sorted(m for m in ("torch", "botorch", "gpytorch", "chgnet") if m in sys.modules)))
"""


@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="the main window's VTK view needs an X display (xvfb-run)")
def test_main_window_and_method_forms_import_no_torch(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "CRYSTAL_STUDIO_HOME": str(tmp_path / "cs")}
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


WARM_PROBE = """
import json, sys, time
from PySide6.QtWidgets import QApplication
from crystal_studio.gui.main_window import MainWindow
app = QApplication([])
window = MainWindow(open_default=False)
window.show()
app.processEvents()
before = "torch" in sys.modules
window.docks["Training"].raise_()
deadline = time.monotonic() + 90
while window.devices is None and time.monotonic() < deadline:
    app.processEvents()
    time.sleep(0.02)
print(json.dumps({"torch_before": before, "devices": window.devices is not None,
                  "dynamo": "torch._dynamo" in sys.modules}))
window.close()
"""


@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="the main window's VTK view needs an X display (xvfb-run)")
def test_showing_the_training_panel_loads_torch_in_the_background(tmp_path):
    """Raising a panel whose jobs run torch detects the devices and imports torch's lazy modules, so the
    first training starts warm (issue 15)."""
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "CRYSTAL_STUDIO_HOME": str(tmp_path / "cs")}
    result = subprocess.run([sys.executable, "-c", WARM_PROBE], capture_output=True, text=True, env=env, timeout=150)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"torch_before": False, "devices": True,
                                                                  "dynamo": True}
