# PyXtal reads its Wyckoff-position and space-group tables from CSV/JSON files in pyxtal/database.
from PyInstaller.utils.hooks import collect_data_files, copy_metadata

datas = collect_data_files("pyxtal") + copy_metadata("pyxtal")
