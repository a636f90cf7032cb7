# SMACT's oxidation states and electronegativities live in data files inside the package.
from PyInstaller.utils.hooks import collect_data_files, copy_metadata

datas = collect_data_files("smact") + copy_metadata("SMACT")
