"""The reference ThumbHash (npm `thumbhash`, pinned in tests/js/package.json) run by Node, and
what the placeholder tests measure on the images it decodes."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

JS = Path(__file__).resolve().parents[1] / "js"
INSTALLED = JS / "node_modules" / "thumbhash"


def reference_missing() -> str | None:
    """Why the reference cannot run here (no Node), else None; installs it as the lockfile
    pins it when `make setup` has not."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "Node.js is not installed"
    if not INSTALLED.is_dir():
        subprocess.run(
            ["npm", "ci", "--prefix", str(JS), "--no-audit", "--no-fund", "--silent"],
            check=True, timeout=300,
        )  # fmt: skip
    return None


@dataclass(frozen=True)
class Decoded:
    """A placeholder as the reference draws it: width, height and RGBA pixels."""

    width: int
    height: int
    rgba: bytes

    def mean_colour(self, columns: tuple[float, float] = (0.0, 1.0)) -> list[float]:
        """The alpha-weighted mean RGB of the columns from `columns[0]` to `columns[1]`
        (fractions of the width)."""
        first, last = (round(self.width * edge) for edge in columns)
        sums, weight = [0.0, 0.0, 0.0], 0.0
        for y in range(self.height):
            for x in range(first, last):
                i = (y * self.width + x) * 4
                alpha = self.rgba[i + 3] / 255
                weight += alpha
                for band in range(3):
                    sums[band] += self.rgba[i + band] * alpha
        return [total / weight for total in sums]

    def mean_alpha(self, columns: tuple[float, float]) -> float:
        """The mean alpha (0-255) of the columns from `columns[0]` to `columns[1]`."""
        first, last = (round(self.width * edge) for edge in columns)
        values = [
            self.rgba[(y * self.width + x) * 4 + 3]
            for y in range(self.height)
            for x in range(first, last)
        ]
        return sum(values) / len(values)


def reference(
    encode: Sequence[tuple[int, int, bytes]] = (), decode: Sequence[str] = ()
) -> tuple[list[dict[str, str]], list[Decoded]]:
    """The reference's placeholders (`thumbhash` in base64, `color`) of RGBA images, and its
    drawings of base64 ThumbHashes, in one run of Node."""
    request = {
        "encode": [
            {"w": w, "h": h, "rgba": base64.b64encode(rgba).decode()} for w, h, rgba in encode
        ],
        "decode": list(decode),
    }
    run = subprocess.run(
        ["node", str(JS / "thumbhash.mjs")],
        input=json.dumps(request), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout)
    drawn = [Decoded(d["w"], d["h"], base64.b64decode(d["rgba"])) for d in answer["decoded"]]
    return answer["encoded"], drawn
