# gemmi (CIF parsing) is one compiled module plus a Python wrapper package.
from PyInstaller.utils.hooks import collect_dynamic_libs, collect_submodules, copy_metadata

binaries = collect_dynamic_libs("gemmi")
hiddenimports = collect_submodules("gemmi")
datas = copy_metadata("gemmi")
