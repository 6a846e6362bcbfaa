"""Bearer JWT authentication and the permission rules of DESIGN.md.

A caller may act on an entity if it is admin, if the entity is ``user:<sub>``, or if a
grant in its ``entities`` claim covers it (``"service:<uuid>"`` or ``"practitioner:*"``).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from mediasvc.errors import Unauthorized
from mediasvc.listing import Visibility
from mediasvc.models.base import ENTITY_TYPE
from mediasvc.records import MediaRecord
from mediasvc.settings import Settings

_BEARER = re.compile(r"^Bearer ([A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*)$")
VERIFIED_TOKENS = 4096
"""Verified tokens remembered (with their principal) until they expire; past this many, the
oldest is forgotten."""
_GRANT = re.compile(rf"^{ENTITY_TYPE}:(\*|[A-Za-z0-9_\-.@]{{1,128}})$")


@dataclass(frozen=True)
class Principal:
    """Who is calling, from a verified token."""

    sub: str
    roles: frozenset[str] = frozenset()
    entities: frozenset[str] = frozenset()

    @property
    def is_admin(self) -> bool:
        """Admins see and change everything."""
        return "admin" in self.roles

    def may_act_on(self, entity_type: str, entity_id: str) -> bool:
        """Whether the caller may upload to and manage media of this entity."""
        if self.is_admin:
            return True
        if entity_type == "user" and entity_id == self.sub:
            return True
        return f"{entity_type}:{entity_id}" in self.entities or f"{entity_type}:*" in self.entities

    def may_see(self, media: MediaRecord) -> bool:
        """Whether the caller may read (and change) one media record."""
        return media.uploaded_by == self.sub or self.may_act_on(media.entity_type, media.entity_id)

    def visibility(self) -> Visibility | None:
        """What this caller may see in lists; None means everything (an admin)."""
        if self.is_admin:
            return None
        entities = {("user", self.sub)}
        types = set()
        for grant in self.entities:
            entity_type, entity_id = grant.split(":", 1)
            if entity_id == "*":
                types.add(entity_type)
            else:
                entities.add((entity_type, entity_id))
        return Visibility(self.sub, frozenset(entities), frozenset(types))


class TokenAuthority:
    """Verifies bearer tokens (and mints them for development and ops)."""

    def __init__(self, settings: Settings, secret: str) -> None:
        self._algorithms = list(settings.jwt_algorithms)
        self._audience = settings.jwt_audience or None
        self._issuer = settings.jwt_issuer or None
        self._leeway = settings.jwt_leeway
        self._default_ttl = settings.token_default_ttl
        self._secret = secret
        self._verify_key: Any = secret
        if settings.jwt_public_key:
            self._verify_key = _read_pem(settings.jwt_public_key)
        self._verified: dict[str, tuple[Principal, float]] = {}  # token: principal, until

    def principal_from_header(self, header: str | None) -> Principal:
        """Verify an Authorization header; anything wrong is a 401."""
        if not header:
            raise Unauthorized("Authentication credentials were not provided")
        match = _BEARER.fullmatch(header.strip())
        if not match:
            raise Unauthorized("Authorization header must be 'Bearer <token>'")
        return self.verify(match.group(1))

    def verify(self, token: str) -> Principal:
        """Decode with pinned algorithms; `exp` and `sub` are required.

        A token seen before is not decoded again until its `exp` (with the leeway) has
        passed: a client sends the same one with every request, and the signature check is
        a fixed cost of each. What a decode checks besides `exp` (signature, audience,
        issuer, `nbf`, `iat`) cannot turn false later for the same token and key.
        """
        remembered = self._verified.get(token)
        if remembered is not None:
            principal, valid_until = remembered
            if time.time() < valid_until:
                return principal
            del self._verified[token]
        principal, claims = self._decode(token)
        if len(self._verified) >= VERIFIED_TOKENS:
            del self._verified[next(iter(self._verified))]  # the oldest
        self._verified[token] = (principal, float(claims["exp"]) + self._leeway)
        return principal

    def _decode(self, token: str) -> tuple[Principal, dict[str, Any]]:
        try:
            claims = jwt.decode(
                token,
                self._verify_key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "sub"], "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("Token has expired") from None
        except jwt.PyJWTError:
            raise Unauthorized("Invalid token") from None
        return _principal_from_claims(claims), claims

    def mint(
        self,
        sub: str,
        *,
        roles: list[str] | None = None,
        entities: list[str] | None = None,
        ttl: int | None = None,
    ) -> str:
        """A signed token with the given claims (HS* algorithms only: we hold no private key)."""
        algorithm = self._algorithms[0]
        if not algorithm.startswith("HS"):
            raise ValueError("minting needs an HS* algorithm; public-key setups mint elsewhere")
        now = int(time.time())
        claims: dict[str, Any] = {"sub": sub, "iat": now, "exp": now + (ttl or self._default_ttl)}
        if roles:
            claims["roles"] = roles
        if entities:
            claims["entities"] = entities
        if self._audience:
            claims["aud"] = self._audience
        if self._issuer:
            claims["iss"] = self._issuer
        return jwt.encode(claims, self._secret, algorithm=algorithm)


def _principal_from_claims(claims: dict[str, Any]) -> Principal:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > 256:
        raise Unauthorized("Invalid token")
    roles = _string_list(claims.get("roles", []))
    entities = _string_list(claims.get("entities", []))
    if roles is None or entities is None or not all(_GRANT.fullmatch(e) for e in entities):
        raise Unauthorized("Invalid token")
    return Principal(sub=sub, roles=frozenset(roles), entities=frozenset(entities))


def _string_list(value: Any) -> list[str] | None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return value


def valid_grant(grant: str) -> bool:
    """Whether an entity grant is well formed (`type:id` or `type:*`)."""
    return bool(_GRANT.fullmatch(grant))


def _read_pem(value: str) -> str:
    if "-----BEGIN" in value:
        return value
    return Path(value).read_text()
