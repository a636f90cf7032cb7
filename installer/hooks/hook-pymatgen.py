# pymatgen reads element data, bond lengths, valences, etc. from JSON/YAML files inside the package
# and imports some modules by name (io, analysis); importlib.metadata gives its version to run records.
from PyInstaller.utils.hooks import collect_data_files, collect_submodules, copy_metadata

datas = collect_data_files("pymatgen") + copy_metadata("pymatgen") + copy_metadata("pymatgen-core")
hiddenimports = collect_submodules("pymatgen.core") + collect_submodules("pymatgen.io.cif") + \
    collect_submodules("pymatgen.symmetry") + collect_submodules("pymatgen.analysis.structure_matcher")
