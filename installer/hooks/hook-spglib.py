# spglib >= 2.5 loads libsymspg from its own lib64/ folder next to the extension module.
from PyInstaller.utils.hooks import collect_dynamic_libs, copy_metadata

binaries = collect_dynamic_libs("spglib")
datas = copy_metadata("spglib")
