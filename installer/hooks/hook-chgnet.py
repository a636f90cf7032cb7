# CHGNet's pretrained weights (pretrained/<version>/*.pth.tar) ship inside its wheel; they are the oracle,
# so they must be in the bundle. Its graph converter is a compiled extension found by import.
from PyInstaller.utils.hooks import collect_data_files, collect_submodules, copy_metadata

datas = collect_data_files("chgnet", includes=["**/*.pth.tar", "**/*.json", "**/*.yaml"]) + copy_metadata("chgnet")
hiddenimports = collect_submodules("chgnet")
