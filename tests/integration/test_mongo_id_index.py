"""Commands by ``_id`` are index lookups on the server the tests run against.

The hot path addresses every document by ``_id`` alone (shared/mongo.py). Upstream
FerretDB 1.24 builds its ``_id`` index under an expression its queries do not use, so
each such command scanned the collection and the stack slowed down as history grew;
scripts/install-ferretdb.sh patches that. This fails on an unpatched build.
"""

from __future__ import annotations

import json
import uuid

from pymongo.asynchronous.database import AsyncDatabase

from shared.mongo import Document


async def test_a_find_by_id_uses_the_id_index(db: AsyncDatabase[Document]) -> None:
    name = f"id-index-{uuid.uuid4().hex[:8]}"
    await db[name].insert_many([{"_id": f"k{i}", "n": i} for i in range(3)])
    try:
        explained = await db.command({"explain": {"find": name, "filter": {"_id": "k2"}}})
        build = await db.client.admin.command("buildInfo")
        plan = json.dumps(explained.get("queryPlanner"), default=str)
        if "ferretdbFeatures" in build:
            assert "USING INDEX" in plan and f"SCAN {name}" not in plan, plan
        else:
            assert "COLLSCAN" not in plan, plan
    finally:
        await db.drop_collection(name)
