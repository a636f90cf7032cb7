# CHGNet's pretrained weights (pretrained/<version>/*.pth.tar) ship inside its wheel; they are the oracle,
# so they must be in the bundle. CHGNet finds them as chgnet/model/../pretrained/..., so the folder
# chgnet/model must exist on disk too: its sources travel as data (a few hundred kB).
from PyInstaller.utils.hooks import collect_data_files, collect_submodules, copy_metadata

datas = (collect_data_files("chgnet", includes=["**/*.pth.tar", "**/*.json", "**/*.yaml"])
         + collect_data_files("chgnet", include_py_files=True, includes=["model/*.py"])
         + copy_metadata("chgnet"))
hiddenimports = collect_submodules("chgnet")
