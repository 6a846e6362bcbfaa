"""Building and running one server process: context, routes, HTTP server, shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web
from pymongo import AsyncMongoClient

from mediasvc import metrics
from mediasvc.auth import TokenAuthority
from mediasvc.context import AppContext
from mediasvc.cors import CorsPolicy
from mediasvc.embedded_db import EmbeddedMongo, running_database_uri
from mediasvc.errors import Unavailable
from mediasvc.handlers import (
    check,
    console,
    files,
    media,
    openapi,
    ops,
    presigned,
    tus,
    upload,
    webhooks,
)
from mediasvc.handlers.base import NotFoundHandler, log_request
from mediasvc.http1 import EarlyAnswerLimits, make_server
from mediasvc.idempotency_records import IdempotencyRepository
from mediasvc.pipeline.dispatcher import Dispatcher
from mediasvc.pipeline.pool import PoolConfig, WorkerPool
from mediasvc.pipeline.queue import JobQueue
from mediasvc.repository import MongoMediaRepository
from mediasvc.secretfiles import resolve_secrets
from mediasvc.services.idempotency import IdempotencyService
from mediasvc.services.lost_jobs import LostJobs
from mediasvc.services.media import MediaService
from mediasvc.services.presigned import PresignedUploads
from mediasvc.services.sweeper import Sweeper
from mediasvc.services.tus import TusUploads
from mediasvc.services.webhooks import WebhookEndpoints
from mediasvc.settings import Settings
from mediasvc.spool import claim_spool, release_spool
from mediasvc.storage import BlobStore
from mediasvc.storage.local import LocalBlobStore, UrlSigner
from mediasvc.storage.s3 import S3BlobStore
from mediasvc.tus_records import TusRepository
from mediasvc.webhooks.client import WebhookClient
from mediasvc.webhooks.relay import Relay
from mediasvc.webhooks.removals import RemovalEvents
from mediasvc.webhooks.sender import Sender
from mediasvc.webhooks.store import WebhookStore

log = logging.getLogger(__name__)


def make_app(context: AppContext) -> tornado.web.Application:
    """The Tornado application: routes collected from the handler modules."""
    routes: list[Any] = [
        *ops.routes,
        *openapi.routes,
        *upload.routes,
        *presigned.routes_for(context.blobs),
        *tus.routes,  # before the media routes, whose {media_id} would match `tus`
        *check.routes,  # and `check`
        *webhooks.routes,  # and `webhooks`
        *media.routes,
        *files.routes_for(context.blobs),
        *(console.routes() if context.settings.console_enabled else []),
    ]
    return tornado.web.Application(
        routes,
        context=context,
        cors=CorsPolicy.from_settings(context.settings),
        default_handler_class=NotFoundHandler,
        log_function=log_request,
        compress_response=False,
        xheaders=context.settings.xheaders,
    )


async def make_blob_store(
    settings: Settings, url_secret: str, executor: ThreadPoolExecutor, stack: AsyncExitStack
) -> BlobStore:
    """The blob store the settings ask for, checked and ready."""
    if settings.storage == "s3":
        s3_threads = ThreadPoolExecutor(settings.s3_threads, thread_name_prefix="mediasvc-s3")
        stack.callback(s3_threads.shutdown, wait=True)
        store = S3BlobStore(settings, s3_threads)
        await store.start()
        return store
    signer = UrlSigner(url_secret, settings.file_url_ttl)
    return LocalBlobStore(settings.storage_path, signer, executor, settings.storage_retry_after)


def early_answer_limits(settings: Settings) -> EarlyAnswerLimits:
    """What the HTTP connections need to know for early answers and header blocks."""
    return EarlyAnswerLimits(
        linger_timeout=settings.linger_timeout,
        linger_idle_timeout=settings.linger_idle_timeout,
        linger_max_bytes=settings.linger_max_bytes,
        max_header_size=settings.max_header_size,
    )


@dataclass
class Service:
    """A running server process: its context, HTTP server and bound port."""

    context: AppContext
    server: tornado.httpserver.HTTPServer
    port: int
    exit_stack: AsyncExitStack

    async def stop(self) -> None:
        """Drain: stop accepting and claiming, let requests finish within the deadline, then
        let running jobs finish (or hand them back), close the database, stop the embedded
        one last."""
        settings = self.context.settings
        if self.context.embedded_db is not None:  # from now on its exit is no fault
            await self.context.embedded_db.stop_supervising()
        self.server.stop()
        if self.context.dispatcher is not None:
            self.context.dispatcher.stop_claiming()
        if not await self.context.requests.wait_idle(settings.shutdown_timeout):
            log.warning("%d requests still running at the deadline", self.context.requests.count)
        await self.server.close_all_connections()
        await self.exit_stack.aclose()
        metrics.process_exited()


async def start_service(settings: Settings) -> Service:
    """Build everything once and start listening; the caller must `stop()` it."""
    stack = AsyncExitStack()
    try:
        context = await _build_context(settings, stack)
        await _start_housekeeping(context, stack)
        server = make_server(
            make_app(context),
            early_answer_limits(settings),
            max_body_size=settings.max_json_body_size,
            chunk_size=settings.http_chunk_size,
            idle_connection_timeout=settings.idle_connection_timeout,
            body_timeout=settings.body_timeout,
            xheaders=settings.xheaders,
        )
        sockets = tornado.netutil.bind_sockets(
            settings.port, settings.host, reuse_port=settings.reuse_port
        )
        server.add_sockets(sockets)
        port = int(sockets[0].getsockname()[1])
        _start_webhooks(context, stack, port)
        return Service(context, server, port, stack)
    except BaseException:
        await stack.aclose()
        raise


async def _build_context(
    settings: Settings, stack: AsyncExitStack, *, migrate: bool = True
) -> AppContext:
    for folder in (settings.data_path, settings.storage_path, settings.spool_path):
        folder.mkdir(parents=True, exist_ok=True)
    jwt_secret, url_secret = resolve_secrets(
        settings.jwt_secret, settings.url_signing_secret, settings.secrets_path
    )
    embedded = None if settings.mongodb_uri else await _start_embedded_db(settings, stack)
    uri = settings.mongodb_uri or (embedded.uri if embedded else "")
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        uri,
        tz_aware=True,
        serverSelectionTimeoutMS=settings.mongodb_timeout_ms,
        connectTimeoutMS=settings.mongodb_timeout_ms,
        socketTimeoutMS=max(settings.mongodb_timeout_ms * 5, 10_000),
    )
    repository = MongoMediaRepository(client, settings.mongodb_database)
    stack.push_async_callback(repository.close)
    await _wait_for_database(repository, settings.startup_timeout, migrate)
    if embedded is not None:
        embedded.supervise(lambda: _wait_for_database(repository, settings.startup_timeout))
        stack.push_async_callback(embedded.stop_supervising)
    executor = ThreadPoolExecutor(
        settings.io_threads, thread_name_prefix="mediasvc-io", initializer=run_as_batch_work
    )
    stack.callback(executor.shutdown, wait=True)
    blobs = await make_blob_store(settings, url_secret, executor, stack)
    dispatcher = _start_dispatcher(settings, repository, blobs, executor, stack)
    webhook_store = WebhookStore(client, settings.mongodb_database)
    await webhook_store.ensure_indexes()
    media = MediaService(
        repository,
        blobs,
        settings,
        RemovalEvents(webhook_store, settings),
        on_job_queued=dispatcher.wake if dispatcher else lambda: None,
    )
    presigned_uploads = PresignedUploads(media)
    tus_repository = TusRepository(client, settings.mongodb_database)
    await tus_repository.ensure_indexes()
    resumable = TusUploads(media, tus_repository, executor)
    idempotency_keys = IdempotencyRepository(client, settings.mongodb_database)
    await idempotency_keys.ensure_indexes()
    idempotency = IdempotencyService(idempotency_keys, settings)
    sweeper = Sweeper(
        presigned_uploads,
        media.deletions,
        settings,
        executor,
        resumable,
        idempotency=idempotency,
        lost_jobs=LostJobs(repository, settings.lost_job_grace, media.on_job_queued),
    )
    return AppContext(
        settings=settings,
        tokens=TokenAuthority(settings, jwt_secret),
        repository=repository,
        blobs=blobs,
        io_executor=executor,
        media=media,
        presigned=presigned_uploads,
        sweeper=sweeper,
        tus=resumable,
        idempotency=idempotency,
        webhooks=WebhookEndpoints(webhook_store, settings),
        dispatcher=dispatcher,
        embedded_db=embedded,
    )


def run_as_batch_work() -> None:
    """The I/O pool's threads hash, write and fsync for uploads while the event loop reads
    them: batch work. Under Linux's SCHED_BATCH their wake-ups never preempt the loop, which
    they otherwise took off its CPU about 200 times a burst of 64 uploads on 2 cores; there
    bench/concurrency.py's ratio rose by 0.03 on average over 9 runs, and varied less. Where
    the policy does not exist or is refused, the threads keep the default one."""
    with suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


async def _start_housekeeping(context: AppContext, stack: AsyncExitStack) -> None:
    """Remove what killed processes left in the spool, claim our own part of it, and start
    the periodic sweep."""
    settings = context.settings
    await context.sweeper.sweep_spool()
    await asyncio.get_running_loop().run_in_executor(
        context.io_executor, claim_spool, settings.spool_path
    )
    stack.callback(release_spool, settings.spool_path)  # after the dispatcher has stopped
    if settings.sweep_interval > 0:
        sweeper = asyncio.create_task(context.sweeper.sweep_forever(), name="sweeper")
        stack.push_async_callback(_cancel, sweeper)


def _start_webhooks(context: AppContext, stack: AsyncExitStack, port: int | None) -> None:
    """The webhook relay, and the sender unless this process sends none; both stop before
    the database client closes."""
    settings = context.settings
    store = context.webhooks.store
    if not settings.public_url:  # the payload's URLs point at this process
        context.media.events.base_url = own_base_url(settings, port)
    wake: Callable[[], None] = lambda: None  # noqa: E731
    if settings.webhook_send_enabled:
        sender = Sender(store, WebhookClient(settings), settings)
        sender.start()
        stack.push_async_callback(
            sender.stop, min(settings.shutdown_timeout, settings.webhook_timeout)
        )
        wake = context.webhooks.on_deliveries = sender.wake
    media = context.media
    relay = Relay(
        context.repository,
        store,
        lambda record: media.present(record, media.events.base_url),
        settings,
        on_deliveries=wake,
    )
    relay.start()
    stack.push_async_callback(relay.stop)


def own_base_url(settings: Settings, port: int | None) -> str:
    """This process's URL, for links in webhook payloads when no public_url is set."""
    host = settings.host
    if host in ("", "0.0.0.0", "::"):
        host = socket.gethostname()
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port or settings.port}"


def _start_dispatcher(
    settings: Settings,
    repository: MongoMediaRepository,
    blobs: BlobStore,
    executor: ThreadPoolExecutor,
    stack: AsyncExitStack,
) -> Dispatcher | None:
    """The job dispatcher and its worker pool, when this process processes."""
    if not settings.processing_enabled:
        return None
    pool = WorkerPool(
        PoolConfig(
            workers=settings.workers,
            tasks_per_child=settings.worker_tasks_per_child,
            start_method=settings.worker_start_method,
            memory_limit=settings.worker_memory_limit,
        )
    )
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    queue = JobQueue(repository.jobs_collection, owner)
    dispatcher = Dispatcher(queue, repository, blobs, pool, settings, executor)
    dispatcher.start()
    stack.push_async_callback(dispatcher.stop, settings.shutdown_timeout)
    return dispatcher


async def _wait_for_database(
    repository: MongoMediaRepository, timeout: float, migrate: bool = True
) -> None:
    """Under supervisord the database may start a moment after us: retry until `timeout`.
    Then bring records of earlier versions up to date (a no-op once they are)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            await repository.ensure_indexes()
            if migrate:
                await repository.migrate()
            return
        except Unavailable:
            if time.monotonic() >= deadline:
                raise
            log.warning("database not reachable yet; retrying")
            await asyncio.sleep(1)


async def _start_embedded_db(settings: Settings, stack: AsyncExitStack) -> EmbeddedMongo:
    embedded = EmbeddedMongo(
        settings.data_path,
        in_memory=settings.embedded_db_in_memory,
        start_timeout=settings.embedded_db_start_timeout,
        restart_delay=settings.embedded_db_restart_delay,
        restart_max_delay=settings.embedded_db_restart_max_delay,
        watch_interval=settings.embedded_db_watch_interval,
    )
    stack.callback(embedded.stop)  # registered first, so it is stopped last
    await embedded.start()
    return embedded


async def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then shut down cleanly."""
    service = await start_service(settings)
    log.info("mediasvc listening on http://%s:%d", settings.host, service.port)
    try:
        await _until_signalled()
        log.info("shutting down")
    finally:
        await service.stop()


async def run_worker(settings: Settings) -> None:
    """A dispatcher and worker pool without HTTP, for nodes that only process."""
    stack = AsyncExitStack()
    try:
        context = await _build_context(settings.replace(processing_enabled=True), stack)
        await _start_housekeeping(context, stack)
        _start_webhooks(context, stack, None)
        log.info("mediasvc worker running with %d worker processes", settings.workers)
        await _until_signalled()
        log.info("shutting down")
    finally:
        await stack.aclose()


async def collect_garbage(settings: Settings) -> dict[str, int | list[str]]:
    """One sweep (`mediasvc gc`): expired presigned uploads, stale multipart uploads, orphaned
    spool entries, and file deletions still to do.

    Beside a running server that has its embedded database, it uses that database (found
    through the pid and port files under <data_dir>/db) instead of starting a second one.
    """
    if not settings.mongodb_uri:
        uri = running_database_uri(settings.data_path)
        if uri is not None:
            settings = settings.replace(mongodb_uri=uri)
    async with AsyncExitStack() as stack:
        context = await _build_context(settings.replace(processing_enabled=False), stack)
        return await context.sweeper.sweep()


async def migrate_database(settings: Settings) -> dict[str, int]:
    """`mediasvc migrate`: bring the records up to date by hand (a server does it at start-up),
    beside a running server through its embedded database, like `gc`."""
    if not settings.mongodb_uri:
        uri = running_database_uri(settings.data_path)
        if uri is not None:
            settings = settings.replace(mongodb_uri=uri)
    async with AsyncExitStack() as stack:
        context = await _build_context(
            settings.replace(processing_enabled=False), stack, migrate=False
        )
        return await context.repository.migrate()


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _until_signalled() -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
