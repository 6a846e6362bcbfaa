"""The embedded database's own process: the nx-27017 server, less one cost it need not pay.

neosqlite (the storage under nx-27017) estimates the size of every aggregation's result
before it runs it, to decide whether to spill the result to disk with the optional `quez`
package. The estimate starts with a COUNT(*) of the whole collection, which SQLite answers
by reading a whole index: 14 ms at 200,000 media and about 70 ms at 1,000,000, paid by every
search count (a search's `$match` + `$count` is the one shape the embedded server counts in
SQL). Without quez installed the estimate decides nothing, so this process skips it; with
quez it is left alone. `mediasvc.embedded_db` starts the server through `main` here.
"""

from __future__ import annotations

import logging
import sys

log = logging.getLogger(__name__)


def skip_unused_estimate() -> bool:
    """Make the aggregation cursor's size estimate free when nothing reads it; True if done.

    Checked against the pinned neosqlite (tests/embedded_db/test_server.py): a version that
    renames these parts leaves the server as it is, only slower, and says so in its log.
    """
    try:
        from neosqlite.collection import aggregation_cursor  # type: ignore[import-untyped]
    except ImportError:
        return False
    cursor = getattr(aggregation_cursor, "AggregationCursor", None)
    if getattr(aggregation_cursor, "QUEZ_AVAILABLE", True) or cursor is None:
        return False
    if not callable(getattr(cursor, "_estimate_result_size", None)):
        log.warning("neosqlite changed: every aggregation still counts its whole collection")
        return False
    cursor._estimate_result_size = _no_estimate
    return True


def _no_estimate(_cursor: object) -> int:
    return 0  # below any threshold: the aggregation runs in memory, as it does without quez


def main() -> int:
    """Run nx-27017 with its command-line arguments (see EmbeddedMongo.command)."""
    skip_unused_estimate()
    from nx_27017.nx_27017 import main as serve  # type: ignore[import-untyped]

    return int(serve() or 0)


if __name__ == "__main__":
    sys.exit(main())
