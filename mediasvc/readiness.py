"""Whether the database and the storage answer: what `/readyz` reports to load balancers and
the console's operations page shows admins, asked the same way for both."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from mediasvc.embedded_db import EmbeddedMongo
from mediasvc.models.ops import Check, ReadinessChecks
from mediasvc.repository import MediaRepository
from mediasvc.storage import BlobStore

log = logging.getLogger(__name__)
CHECK_TIMEOUT = 2.0


async def dependency_checks(
    repository: MediaRepository, blobs: BlobStore, embedded_db: EmbeddedMongo | None
) -> ReadinessChecks:
    """What the database and the storage answer; an embedded database being started again
    after a crash is `restarting` without being asked."""
    if embedded_db is not None and embedded_db.state == "restarting":
        database: Check = "restarting"
    else:
        database = await check(repository.ping)
    return ReadinessChecks(database=database, storage=await check(blobs.check))


async def check(probe: Callable[[], Awaitable[None]]) -> Check:
    """`ok`, `timeout` (after CHECK_TIMEOUT seconds) or `unavailable`."""
    try:
        await asyncio.wait_for(probe(), CHECK_TIMEOUT)
    except TimeoutError:
        return "timeout"
    except Exception as exc:  # whatever it is, the dependency is not usable
        log.warning("dependency check failed: %s", exc)
        return "unavailable"
    return "ok"
