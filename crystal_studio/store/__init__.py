"""The SQLite project store (sqlite-utils): schema, migrations, typed queries. No torch, no Qt."""

from crystal_studio.store.project import Project, StructureQuery

__all__ = ["Project", "StructureQuery"]
