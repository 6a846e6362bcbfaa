"""The shared things of one server process, built once in `main` and injected into handlers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from mediasvc.auth import TokenAuthority
from mediasvc.embedded_db import EmbeddedMongo
from mediasvc.lifecycle import InFlight, Slots
from mediasvc.pipeline.dispatcher import Dispatcher
from mediasvc.repository import MediaRepository
from mediasvc.services.idempotency import IdempotencyService
from mediasvc.services.media import MediaService
from mediasvc.services.presigned import PresignedUploads
from mediasvc.services.sweeper import Sweeper
from mediasvc.services.tus import TusUploads
from mediasvc.services.webhooks import WebhookEndpoints
from mediasvc.settings import Settings
from mediasvc.storage import BlobStore


@dataclass
class AppContext:
    """Settings, database, blob store, thread pool and services of one process."""

    settings: Settings
    tokens: TokenAuthority
    repository: MediaRepository
    blobs: BlobStore
    io_executor: ThreadPoolExecutor
    media: MediaService
    presigned: PresignedUploads
    sweeper: Sweeper
    tus: TusUploads
    idempotency: IdempotencyService
    webhooks: WebhookEndpoints
    dispatcher: Dispatcher | None = None
    embedded_db: EmbeddedMongo | None = None  # when this process runs its own database
    requests: InFlight = field(default_factory=InFlight)
    uploads: Slots = field(default_factory=Slots)
