"""The spec's JavaScript examples, run in Node against the live service."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import uuid
from pathlib import Path

import pytest

from tests.support.client import API, Client
from tests.support.service import Backend
from tests.support.tokens import make_token

JS = Path(__file__).parent / "js"
pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")


async def _node(script: str, env: dict[str, str]) -> dict[str, object]:
    process = await asyncio.create_subprocess_exec(
        "node",
        str(JS / script),
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    result: dict[str, object] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def test_direct_upload_example(
    client: Client, samples: dict[str, bytes], tmp_path: Path
) -> None:
    service_id = str(uuid.uuid4())
    token = make_token(str(uuid.uuid4()), entities=[f"service:{service_id}"])
    photo = tmp_path / "gallery photo.jpg"
    photo.write_bytes(samples["jpg"])
    env = {
        "BASE_URL": client.base,
        "TOKEN": token,
        "SERVICE_ID": service_id,
        "FILE_PATH": str(photo),
    }
    result = await _node("direct_upload.mjs", env)
    assert result["status"] == 201
    media = result["media"]
    assert isinstance(media, dict)
    assert media["filename"] == "gallery photo.jpg"
    assert media["title"] == "Service Gallery Image"
    assert media["entity_type"] == "service" and media["entity_id"] == service_id
    stored = await client.request("GET", f"{API}/{media['id']}/", token=token)
    assert stored.status == 200 and stored.json["file_size"] == len(samples["jpg"])


async def test_presigned_upload_example(
    backend: Backend, samples: dict[str, bytes], tmp_path: Path
) -> None:
    service_id = str(uuid.uuid4())
    token = make_token(str(uuid.uuid4()), entities=[f"service:{service_id}"])
    video = tmp_path / "large video.mp4"
    video.write_bytes(samples["mp4"])
    env = {
        "BASE_URL": backend.client.base, "TOKEN": token, "SERVICE_ID": service_id,
        "FILE_PATH": str(video), "FILE_TYPE": "video/mp4",
    }  # fmt: skip
    result = await _node("presigned_upload.mjs", env)
    assert result["status"] == 201
    media = await backend.client.request("GET", f"{API}/{result['media_id']}/", token=token)
    assert media.json["status"] in ("processing", "ready")
    assert media.json["file_size"] == len(samples["mp4"])
    stored = await backend.client.request("GET", media.json["url"])
    assert stored.body == samples["mp4"]
