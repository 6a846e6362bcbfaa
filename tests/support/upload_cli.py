"""`mediasvc upload` run as people run it: the console script in a subprocess (so the service,
which runs in the test's event loop, keeps serving while it waits)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCRIPT = Path(sys.executable).with_name("mediasvc")


@dataclass
class Finished:
    """What one run printed and how it ended."""

    returncode: int
    out: str
    err: str

    @property
    def lines(self) -> list[dict[str, Any]]:
        """The `--json` objects, one a file."""
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]

    def by_path(self) -> dict[str, dict[str, Any]]:
        return {line["path"]: line for line in self.lines}


def cli_env(token: str, state_home: Path, **settings: str) -> dict[str, str]:
    """This environment without the caller's MEDIASVC_* settings, with the token to send."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIASVC_")}
    env.update({"MEDIASVC_TOKEN": token, "XDG_STATE_HOME": str(state_home), "COLUMNS": "200"})
    env.update({f"MEDIASVC_{name.upper()}": value for name, value in settings.items()})
    return env


async def start_upload(
    *args: str, env: dict[str, str], cwd: Path | None = None
) -> asyncio.subprocess.Process:
    """`mediasvc upload ARGS...` started, its output piped."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # started in the background (`cmd &`), this process ignores SIGINT and a child
        # would inherit that; the tests send the CLI a Ctrl-C, so it must not
        signal.signal(signal.SIGINT, signal.default_int_handler)
    return await asyncio.create_subprocess_exec(
        str(SCRIPT), "upload", *args, env=env, cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def finish(process: asyncio.subprocess.Process, timeout: float = 120) -> Finished:
    """Wait for a run to end (killing it if it takes longer than `timeout`)."""
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        out, err = await process.communicate()
        raise AssertionError(f"mediasvc upload took over {timeout} s: {err.decode()}") from None
    assert process.returncode is not None
    return Finished(process.returncode, out.decode(), err.decode())


async def mediasvc_upload(
    *args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 120
) -> Finished:
    """`mediasvc upload ARGS...` run to its end."""
    return await finish(await start_upload(*args, env=env, cwd=cwd), timeout)
