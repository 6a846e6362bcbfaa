"""Fixtures: the real service on a loopback port with the embedded database in memory,
callers with tokens, an HTTP client, sample files made by ffmpeg, an upload factory, worker
processes for pyvips, and the same service on S3 (SeaweedFS). The helpers they are built from
live in `tests.support`."""

from __future__ import annotations

import multiprocessing
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from mediasvc.app import Service, start_service
from mediasvc.pipeline.tasks import init_worker
from mediasvc.settings import Settings
from tests.support.client import Client
from tests.support.media import Uploader
from tests.support.s3 import S3_ACCESS_KEY, S3_SECRET_KEY, S3Server, seaweedfs
from tests.support.samples import make_samples
from tests.support.service import Backend, service_settings
from tests.support.tokens import Caller, make_token


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return service_settings(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
async def service(settings: Settings) -> AsyncIterator[Service]:
    running = await start_service(settings)
    yield running
    await running.stop()


@pytest.fixture(scope="session")
def client(service: Service) -> Client:
    return Client(f"http://127.0.0.1:{service.port}")


@pytest.fixture
def user() -> Caller:
    sub = str(uuid.uuid4())
    return Caller(sub, make_token(sub))


@pytest.fixture
def other_user() -> Caller:
    sub = str(uuid.uuid4())
    return Caller(sub, make_token(sub))


@pytest.fixture(scope="session")
def admin() -> Caller:
    sub = str(uuid.uuid4())
    return Caller(sub, make_token(sub, roles=["admin"]))


@pytest.fixture(scope="session")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Real small files of each kind, made with ffmpeg (and a hand-written PDF and SVG)."""
    return make_samples(tmp_path_factory.mktemp("samples"))


@pytest.fixture(scope="session")
def pool() -> Iterator[ProcessPoolExecutor]:
    """Worker processes like the service's own, for the pipeline and for making and measuring
    images: the test process is also the server process, which never imports pyvips."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        2, mp_context=context, initializer=init_worker, initargs=(0, os.getpid())
    ) as executor:
        yield executor


@pytest.fixture
def upload_media(client: Client, samples: dict[str, bytes]) -> Uploader:
    """`await upload_media(caller, "photo.jpg", **fields)`: the media created (201 asserted),
    through the shared client unless `client=` names another."""
    return Uploader(client, samples)


@pytest.fixture
def spool_dir(settings: Settings) -> Iterator[Path]:
    yield settings.spool_path


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture(scope="session")
def s3_settings(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server) -> Settings:
    return service_settings(
        tmp_path_factory.mktemp("s3-data"),
        storage="s3",
        s3_endpoint_url=s3_server.endpoint,
        s3_bucket=f"mediasvc-test-{uuid.uuid4().hex[:12]}",
        s3_access_key=S3_ACCESS_KEY,
        s3_secret_key=S3_SECRET_KEY,
        s3_addressing_style="path",
        s3_create_bucket=True,
        s3_multipart_chunk_size=5 * 1024 * 1024,
        sweep_interval=0,
    )


@pytest.fixture(scope="session")
async def s3_service(s3_settings: Settings) -> AsyncIterator[Service]:
    running = await start_service(s3_settings)
    yield running
    await running.stop()


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest) -> Backend:
    """The same test against the local folder and against S3 (SeaweedFS)."""
    if request.param == "local":
        service = request.getfixturevalue("service")
    else:
        service = request.getfixturevalue("s3_service")
    return Backend(request.param, service, Client(f"http://127.0.0.1:{service.port}"))
