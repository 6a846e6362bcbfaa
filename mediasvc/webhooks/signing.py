"""Standard Webhooks signatures: `whsec_` secrets and `v1,` HMAC-SHA256 signatures over
`{id}.{timestamp}.{body}`, several of them space-separated while a rotated secret is in its
grace (https://www.standardwebhooks.com)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # the specification asks for 24 to 64


def new_secret() -> str:
    """A fresh random signing secret."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signature(secret: str, message_id: str, timestamp: int, body: str) -> str:
    """`v1,<base64 HMAC-SHA256>` of one message with one secret."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.{body}".encode()
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(keys: list[str], message_id: str, timestamp: int, body: str) -> str:
    """The `webhook-signature` header: one signature per signing secret."""
    return " ".join(signature(key, message_id, timestamp, body) for key in keys)
