"""What operators and load balancers read: liveness and readiness."""

from __future__ import annotations

from typing import Literal

from mediasvc.models.base import Shape

Check = Literal["ok", "timeout", "unavailable", "restarting"]


class Health(Shape):
    """The process answers."""

    status: Literal["ok"]


class ReadinessChecks(Shape):
    """What each dependency answered."""

    database: Check
    storage: Check


class Readiness(Shape):
    """The database and the storage answer."""

    status: Literal["ready"]
    checks: ReadinessChecks


class NotReady(Shape):
    """A dependency does not answer."""

    error: str
    checks: ReadinessChecks
