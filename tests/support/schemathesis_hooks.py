"""Loaded by the Schemathesis CLI (SCHEMATHESIS_HOOKS) in tests/test_openapi.py: tus bodies
(`application/offset+octet-stream`) are raw bytes, sent like `application/octet-stream`."""

from __future__ import annotations

import schemathesis

schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")
