"""The warehouse: a DuckLake lake behind one class, :class:`Warehouse`, that owns all SQL."""

from embed_dagster.core.warehouse.lake import LakeConfig, Warehouse, WarehouseError

__all__ = ["LakeConfig", "Warehouse", "WarehouseError"]
