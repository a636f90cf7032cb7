# ASE loads each I/O format's module by name (ase.io.formats); we read and write extended XYZ and
# relax with FIRE on a cell filter. Only those modules: ase.io as a whole would drag in VTK's full
# Python wrapping (ase.io.vtkxml imports `vtk`) and Tk (ase.gui).
from PyInstaller.utils.hooks import copy_metadata

hiddenimports = ["ase.io.extxyz", "ase.io.formats", "ase.calculators.singlepoint", "ase.filters", "ase.optimize"]
datas = copy_metadata("ase")
