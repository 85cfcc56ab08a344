"""``catalog.changed``: the store's notice that a business's widgets or secrets changed.

Orchestrators cache each business's catalog (active widgets and sealed secrets)
and drop the business's entry when this arrives; see services/orchestrator/catalog.py.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter

from shared.ids import Id

CATALOG_CHANGED = "catalog.changed"


class CatalogChanged(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["catalog.changed"] = "catalog.changed"
    version: Literal[1] = 1
    business_id: Id
    what: Literal["widgets", "secrets"]

    def log_fields(self) -> dict[str, str]:
        return {"business_id": self.business_id}


decode_catalog_changed = TypeAdapter(CatalogChanged).validate_json
