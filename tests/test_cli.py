"""`mediasvc token` mints tokens the server with the same settings accepts."""

from __future__ import annotations

import uuid
from pathlib import Path

import jwt
import pytest

from mediasvc.cli import main
from tests.support.client import API, Client
from tests.support.tokens import TEST_SECRET


async def test_token_is_accepted(
    client: Client,
    samples: dict[str, bytes],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("MEDIASVC_JWT_SECRET", TEST_SECRET)
    service_id = str(uuid.uuid4())
    args = ["token", "--sub", "ops", "--entity", f"service:{service_id}", "--ttl", "120"]
    assert main([*args, "--data-dir", str(tmp_path)]) == 0
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(token, TEST_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "ops" and claims["entities"] == [f"service:{service_id}"]
    assert claims["exp"] - claims["iat"] == 120
    fields = {"entity_type": "service", "entity_id": service_id}
    assert (await client.upload(token, "a.jpg", samples["jpg"], fields)).status == 201

    assert main(["token", "--sub", "root", "--role", "admin", "--data-dir", str(tmp_path)]) == 0
    admin = capsys.readouterr().out.strip()
    listing = await client.request("GET", f"{API}/?entity_type=service", token=admin)
    assert listing.status == 200 and listing.json["count"] >= 1


@pytest.mark.parametrize("extra", [["--entity", "nocolon"], ["--ttl", "0"]])
def test_token_refuses_bad_arguments(
    extra: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["token", "--sub", "x", "--data-dir", str(tmp_path), *extra]) == 2
    assert "mediasvc:" in capsys.readouterr().err
