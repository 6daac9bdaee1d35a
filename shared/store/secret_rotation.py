"""`syncjobs secrets rotate`: every stored secret re-encrypted under the first of SYNCJOBS_SECRET_KEYS.

Run it after putting a new key first (the old ones still listed, to decrypt); then the old keys can go.
Secrets stored in clear (before encryption existed) are encrypted by the same pass.
"""

from __future__ import annotations

from syncjobs.shared.mongo import Database
from syncjobs.shared.secrets import reseal, reseal_config


async def rotate_secrets(db: Database) -> dict[str, int]:
    """Re-encrypt the secrets of every data source, destination and webhook; returns counts per collection."""
    counts: dict[str, int] = {}
    for collection in ("data_sources", "destinations"):
        counts[collection] = 0
        async for doc in db[collection].find({}, {"config": 1}):
            await db[collection].update_one(
                {"_id": doc["_id"]}, {"$set": {"config": reseal_config(doc.get("config") or {})}}
            )
            counts[collection] += 1
    counts["webhooks"] = 0
    async for hook in db.webhooks.find({"secret": {"$type": "string"}}, {"secret": 1}):
        await db.webhooks.update_one({"_id": hook["_id"]}, {"$set": {"secret": reseal(hook["secret"])}})
        counts["webhooks"] += 1
    return counts
