# BoTorch checks its dependencies' versions through importlib.metadata at import time and uses
# source inspection in some modules, so ship its sources and metadata with it.
from PyInstaller.utils.hooks import collect_data_files, collect_submodules, copy_metadata

hiddenimports = collect_submodules("botorch")
datas = copy_metadata("botorch") + collect_data_files("botorch", include_py_files=True)
