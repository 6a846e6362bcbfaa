"""SVG drawn straight at the sizes a job needs, in a child process with a CPU limit.

Nothing in an SVG's header tells what drawing it costs (one `feMorphology` filter of a few
bytes can take minutes), and a library call cannot be interrupted, so SVGs are rasterised
by a child of the worker that the kernel stops at the job's CPU budget. Each size is drawn
directly (the thumbnail box, the optimize box `svg_render_size`, the resize box), never at
the document's own, possibly huge, declared size. The worker then treats the PNGs as the
sources of its operations.
"""

from __future__ import annotations

import os
import subprocess
import sys

from mediasvc.pipeline import budget
from mediasvc.pipeline.tasks import Refused, TaskSpec


def rasterise(source: str, spec: TaskSpec) -> dict[str, str]:
    """PNG renderings of the SVG at `source`, by operation ("thumbnail", "optimize", "resize")."""
    boxes = _boxes(spec)
    if not boxes:
        return {}
    outputs = {op: os.path.join(spec.work_dir, f"svg-{op}.png") for op in boxes}
    args = [sys.executable, "-m", "mediasvc.pipeline.svg", source]
    for op, (width, height) in boxes.items():
        args += [outputs[op], str(width), str(height)]
    try:
        result = budget.run_child(args, spec.limits.timeout)
    except subprocess.TimeoutExpired:
        raise Refused(f"Drawing the SVG took longer than {spec.limits.timeout:.0f}s") from None
    if result.returncode != 0:
        raise Refused(f"Cannot draw the SVG: {_reason(result.stderr)}")
    return outputs


def _boxes(spec: TaskSpec) -> dict[str, tuple[int, int]]:
    size, render = spec.limits.thumbnail_size, spec.limits.svg_render_size
    boxes: dict[str, tuple[int, int]] = {}
    if "thumbnail" in spec.operations:
        boxes["thumbnail"] = (size, size)
    if "optimize" in spec.operations:
        boxes["optimize"] = (render, render)
    if "resize" in spec.operations and spec.resize:
        boxes["resize"] = spec.resize
    return boxes


def _reason(stderr: bytes) -> str:
    lines = [line for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    return (lines[-1] if lines else "the renderer failed")[:200]


def _draw(source: str, jobs: list[str]) -> int:
    """In the child: draw `source` into each (path, width, height), fit inside, never upscaled."""
    import pyvips

    pyvips.cache_set_max(0)
    try:
        for index in range(0, len(jobs), 3):
            path, width, height = jobs[index], int(jobs[index + 1]), int(jobs[index + 2])
            image = pyvips.Image.thumbnail(source, width, height=height, size="down")
            image.pngsave(path, compression=1)
    except pyvips.Error as exc:
        text = (getattr(exc, "detail", "") or str(exc)).strip().splitlines()
        print((text[0] if text else "unknown error").replace(source, "file"), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_draw(sys.argv[1], sys.argv[2:]))
