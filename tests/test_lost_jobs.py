"""A process killed between a media's record and its job: the sweep queues the job again.

Killing a process between two writes a millisecond apart cannot be timed from outside, so
each test writes the state such a kill leaves (a `processing` media showing a queued job
that does not exist) through the repository, then runs the real sweep and the real workers.
"""

from __future__ import annotations

import uuid
from typing import Any

from mediasvc.app import Service
from mediasvc.records import now_ms
from tests.support.client import Client
from tests.support.media import settled, upload_settled
from tests.support.tokens import Caller


async def _as_a_crash_leaves_it(service: Service, media_id: str, age_s: int) -> str:
    """The media `processing`, showing a queued job that was never written, last changed
    `age_s` seconds ago; returns that job's id."""
    job_id = str(uuid.uuid4())
    changed = now_ms() - age_s * 1000
    summary: dict[str, Any] = {
        "id": job_id, "operations": ["thumbnail"], "options": {}, "state": "queued",
        "attempts": 0, "error": None, "created_at": changed, "started_at": None,
        "finished_at": None,
    }  # fmt: skip
    changes = {"status": "processing", "job": summary, "updated_at": changed}
    await service.context.repository.update(media_id, changes)
    return job_id


async def test_a_job_a_crash_kept_out_of_the_queue_is_queued_again(
    service: Service, client: Client, user: Caller, samples: dict[str, bytes]
) -> None:
    media = await upload_settled(client, user, "lost.jpg", samples["jpg"])
    assert media["status"] == "ready"
    grace = service.context.settings.lost_job_grace
    job_id = await _as_a_crash_leaves_it(service, media["id"], grace + 5)

    report = await service.context.sweeper.sweep()
    assert report["requeued_jobs"] >= 1, report
    assert await service.context.repository.jobs_present([job_id]) == {job_id}
    again = await settled(client, user.token, media["id"])
    assert again["status"] == "ready" and again["job"]["id"] == job_id
    assert again["job"]["state"] == "done" and again["thumbnail_url"]

    report = await service.context.sweeper.sweep()  # nothing left to queue
    assert report["requeued_jobs"] == 0, report


async def test_a_recent_or_queued_job_is_left_alone(
    service: Service, client: Client, user: Caller, samples: dict[str, bytes]
) -> None:
    media = await upload_settled(client, user, "young.jpg", samples["jpg"])
    job_id = await _as_a_crash_leaves_it(service, media["id"], 1)  # within the grace
    report = await service.context.sweeper.sweep()
    assert report["requeued_jobs"] == 0, report
    assert not await service.context.repository.jobs_present([job_id])
    await service.context.repository.update(media["id"], {"status": "ready"})
