# GPyTorch's type annotations are checked at run time (jaxtyping/typeguard read the source), so
# its .py files travel with the bytecode; its version comes from importlib.metadata.
from PyInstaller.utils.hooks import collect_data_files, collect_submodules, copy_metadata

hiddenimports = collect_submodules("gpytorch")
datas = copy_metadata("gpytorch") + collect_data_files("gpytorch", include_py_files=True)
