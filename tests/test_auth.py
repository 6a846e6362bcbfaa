"""Bearer tokens: every malformed, expired, forged or unsigned token is a 401."""

from __future__ import annotations

import base64
import json
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mediasvc import auth
from mediasvc.auth import Principal, TokenAuthority
from mediasvc.errors import Unauthorized
from mediasvc.records import MediaRecord
from mediasvc.settings import Settings
from tests.support.client import API, Client
from tests.support.tokens import TEST_SECRET, make_token


def _unsigned(claims: dict[str, object]) -> str:
    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


SUB = str(uuid.uuid4())
BAD_HEADERS = {
    "missing": None,
    "not bearer": f"Basic {base64.b64encode(b'a:b').decode()}",
    "malformed": "Bearer not-a-token",
    "empty bearer": "Bearer ",
    "expired": "Bearer " + make_token(SUB, ttl=-120),
    "wrong signature": "Bearer " + make_token(SUB, secret="another-secret-" + "y" * 60),
    "alg none": "Bearer " + _unsigned({"sub": SUB, "exp": int(time.time()) + 600}),
    "no exp": "Bearer " + jwt.encode({"sub": SUB}, TEST_SECRET, algorithm="HS256"),
    "no sub": "Bearer "
    + jwt.encode({"exp": int(time.time()) + 60}, TEST_SECRET, algorithm="HS256"),
    "hs512 not allowed": "Bearer " + make_token(SUB, algorithm="HS512"),
    "roles not a list": "Bearer " + make_token(SUB, roles="admin"),  # type: ignore[arg-type]
    "bad grant": "Bearer " + make_token(SUB, entities=["service"]),
}


@pytest.mark.parametrize("case", list(BAD_HEADERS))
async def test_bad_tokens_are_401(client: Client, case: str) -> None:
    header = BAD_HEADERS[case]
    headers = {"Authorization": header} if header is not None else {}
    for method, path in (
        ("GET", f"{API}/"),
        ("POST", f"{API}/upload/"),
        ("GET", f"{API}/{uuid.uuid4()}/"),
    ):
        response = await client.request(method, path, headers=headers)
        assert response.status == 401, (case, path)
        assert set(response.json) == {"error"}
        assert response.headers["X-Request-Id"]


async def test_valid_token_lists(client: Client) -> None:
    response = await client.request("GET", f"{API}/", token=make_token(SUB))
    assert response.status == 200


def test_rs256_with_public_key(tmp_path: object) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    settings = Settings(jwt_algorithms=("RS256",), jwt_public_key=public, jwt_audience="media")
    authority = TokenAuthority(settings, secret="")
    claims = {"sub": "svc", "exp": int(time.time()) + 60, "aud": "media", "roles": ["admin"]}
    token = jwt.encode(claims, key, algorithm="RS256")
    assert authority.verify(token) == Principal("svc", frozenset({"admin"}))
    with pytest.raises(Unauthorized):
        authority.verify(jwt.encode({**claims, "aud": "other"}, key, algorithm="RS256"))
    # An HS256 token signed with the public key as the secret (algorithm confusion) is refused.
    with pytest.raises(Unauthorized):
        authority.verify(_hs256_with(public, claims))


def test_a_remembered_token_still_expires() -> None:
    authority = TokenAuthority(Settings(jwt_leeway=0), TEST_SECRET)
    expires = int(time.time()) + 1
    token = jwt.encode({"sub": "u1", "exp": expires}, TEST_SECRET, algorithm="HS256")
    assert authority.verify(token) == Principal("u1")
    assert authority.verify(token) == Principal("u1")  # from memory
    time.sleep(max(0.0, expires - time.time()) + 0.05)
    with pytest.raises(Unauthorized, match="Token has expired"):
        authority.verify(token)


def test_remembered_tokens_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "VERIFIED_TOKENS", 2)
    authority = TokenAuthority(Settings(), TEST_SECRET)
    tokens = {sub: make_token(sub) for sub in ("a", "b", "c")}
    for _ in range(2):
        for sub, token in tokens.items():
            assert authority.verify(token) == Principal(sub)
    assert len(authority._verified) == 2


def _hs256_with(secret: str, claims: dict[str, object]) -> str:
    import hashlib
    import hmac

    def part(value: dict[str, object]) -> bytes:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=")

    signing_input = part({"alg": "HS256", "typ": "JWT"}) + b"." + part(claims)
    signature = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()


def test_permission_rules() -> None:
    entity = str(uuid.uuid4())
    user = Principal("u1")
    assert user.may_act_on("user", "u1")
    assert not user.may_act_on("user", "u2")
    assert not user.may_act_on("service", entity)
    granted = Principal("u1", entities=frozenset({f"service:{entity}", "practitioner:*"}))
    assert granted.may_act_on("service", entity)
    assert not granted.may_act_on("service", str(uuid.uuid4()))
    assert granted.may_act_on("practitioner", str(uuid.uuid4()))
    assert Principal("a", roles=frozenset({"admin"})).may_act_on("anything", entity)
    uploaded = MediaRecord.new(
        entity=("service", entity),
        uploaded_by="u1",
        kind_media_type="image",
        content_type="image/png",
        extension="png",
        filename="a.png",
        now=0,
    )
    assert user.may_see(uploaded)
