"""Tokens signed like the ones the service accepts, and the callers who carry them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt

TEST_SECRET = "test-secret-" + "x" * 60


def make_token(
    sub: str,
    *,
    roles: list[str] | None = None,
    entities: list[str] | None = None,
    ttl: int = 600,
    secret: str = TEST_SECRET,
    algorithm: str = "HS256",
    **extra: Any,
) -> str:
    """A token signed like the ones the service accepts (or not, by changing the knobs)."""
    claims: dict[str, Any] = {"sub": sub, "exp": int(time.time()) + ttl, **extra}
    if roles is not None:
        claims["roles"] = roles
    if entities is not None:
        claims["entities"] = entities
    return jwt.encode(claims, secret, algorithm=algorithm)


@dataclass
class Caller:
    """A user with a token and a fresh entity of their own."""

    sub: str
    token: str

    @property
    def entity(self) -> dict[str, str]:
        return {"entity_type": "user", "entity_id": self.sub}
