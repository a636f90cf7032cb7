# Crystal Studio loads model kinds and design methods by module name (ml/kinds, design/methods), so
# PyInstaller cannot see them: take every submodule. The shipped resources/ folder is added by the spec.
from PyInstaller.utils.hooks import collect_submodules, copy_metadata

hiddenimports = collect_submodules("crystal_studio")
datas = copy_metadata("crystal-studio")
