"""ThumbHash, ported from Evan Wallace's reference implementation (npm `thumbhash` 0.1.1:
`rgbaToThumbHash` and `thumbHashToAverageRGBA`) so that it gives the same bytes.

The same float operations run in the same order, with JavaScript's `Math.round` (halves up,
where Python's `round` goes to even), strictly sequential sums (the builtin `sum` of floats
compensates rounding errors since Python 3.12) and `Math.cos` as Node 20 computes it (V8's
fdlibm, below: the C library's cos differs in the last bit for a few arguments, and flat or
symmetric images have terms that sit on a rounding edge). Later V8 versions compute cos
otherwise, so the reference itself may give other bytes there in such cases.
tests/test_placeholders.py compares this with the reference in Node. The ports on PyPI were
not faithful enough to pin: `thumbhash` 0.1.2 loses the alpha channel of transparent images
(an operator-precedence slip), and neither it nor `thumbhash-python` 1.0.1 (which brings
Pillow and typer along) uses JavaScript's rounding.

Plain Python over bytes (no pyvips): a 100x75 opaque image takes some 35 ms.
"""

from __future__ import annotations

import math
import struct
from collections import deque
from collections.abc import Iterable
from functools import lru_cache
from itertools import accumulate
from operator import mul

MAX_SIDE = 100  # the reference's limit: a larger input costs time and adds nothing


def encode(w: int, h: int, rgba: bytes) -> bytes:
    """ThumbHash of a w x h RGBA image (not premultiplied): `rgbaToThumbHash`."""
    if w > MAX_SIDE or h > MAX_SIDE:
        raise ValueError(f"{w}x{h} doesn't fit in 100x100")
    if len(rgba) != w * h * 4:
        raise ValueError("the pixels do not fill the size")
    avg_r, avg_g, avg_b, avg_a = _average(rgba)
    has_alpha = avg_a < w * h
    l_limit = 5 if has_alpha else 7  # fewer luminance bits when there is alpha
    lx = max(1, _js_round(l_limit * w / max(w, h)))
    ly = max(1, _js_round(l_limit * h / max(w, h)))
    luma, p, q, a = _lpqa(rgba, (avg_r, avg_g, avg_b))
    l_dc, l_ac, l_scale = _encode_channel(luma, w, h, max(3, lx), max(3, ly))
    p_dc, p_ac, p_scale = _encode_channel(p, w, h, 3, 3)
    q_dc, q_ac, q_scale = _encode_channel(q, w, h, 3, 3)
    landscape = w > h
    header24 = (
        _js_round(63 * l_dc)
        | (_js_round(31.5 + 31.5 * p_dc) << 6)
        | (_js_round(31.5 + 31.5 * q_dc) << 12)
        | (_js_round(31 * l_scale) << 18)
        | (has_alpha << 23)
    )
    header16 = (
        (ly if landscape else lx)
        | (_js_round(63 * p_scale) << 3)
        | (_js_round(63 * q_scale) << 9)
        | (landscape << 15)
    )
    out = [header24 & 255, (header24 >> 8) & 255, header24 >> 16, header16 & 255, header16 >> 8]
    factors = [l_ac, p_ac, q_ac]
    if has_alpha:
        a_dc, a_ac, a_scale = _encode_channel(a, w, h, 5, 5)
        out.append(_js_round(15 * a_dc) | (_js_round(15 * a_scale) << 4))
        factors.append(a_ac)
    nibbles = [_js_round(15 * f) for ac in factors for f in ac]
    for index in range(0, len(nibbles), 2):
        high = nibbles[index + 1] << 4 if index + 1 < len(nibbles) else 0
        out.append(nibbles[index] | high)
    return bytes(byte & 255 for byte in out)  # a Uint8Array keeps the low 8 bits


def average_rgba(thumb: bytes) -> tuple[float, float, float, float]:
    """The average colour of a ThumbHash, each part from 0 to 1: `thumbHashToAverageRGBA`."""
    header = thumb[0] | (thumb[1] << 8) | (thumb[2] << 16)
    luma = (header & 63) / 63
    p = ((header >> 6) & 63) / 31.5 - 1
    q = ((header >> 12) & 63) / 31.5 - 1
    alpha = (thumb[5] & 15) / 15 if header >> 23 else 1.0
    blue = luma - 2 / 3 * p
    red = (3 * luma - blue + q) / 2
    green = red - q
    return (_clamp(red), _clamp(green), _clamp(blue), alpha)


def color(thumb: bytes) -> str:
    """The ThumbHash's average colour as `#rrggbb` (lowercase; alpha left out)."""
    red, green, blue, _ = average_rgba(thumb)
    return "#" + "".join(f"{_js_round(255 * c):02x}" for c in (red, green, blue))


def _average(rgba: bytes) -> tuple[float, float, float, float]:
    """The alpha-weighted average colour, and the sum of alpha."""
    alphas = [value / 255 for value in rgba[3::4]]
    weights = [alpha / 255 for alpha in alphas]
    avg_r, avg_g, avg_b = (_sum(map(mul, weights, rgba[band::4])) for band in range(3))
    avg_a = _sum(alphas)
    if avg_a:
        avg_r /= avg_a
        avg_g /= avg_a
        avg_b /= avg_a
    return avg_r, avg_g, avg_b, avg_a


def _lpqa(
    rgba: bytes, average: tuple[float, float, float]
) -> tuple[list[float], list[float], list[float], list[float]]:
    """Luminance, yellow-blue, red-green and alpha, composited atop the average colour."""
    alphas = [value / 255 for value in rgba[3::4]]
    weights = [alpha / 255 for alpha in alphas]
    r, g, b = (
        [avg * (1 - alpha) + weight * value
         for alpha, weight, value in zip(alphas, weights, rgba[band::4], strict=True)]
        for band, avg in enumerate(average)
    )  # fmt: skip
    luma = [(red + green + blue) / 3 for red, green, blue in zip(r, g, b, strict=True)]
    p = [(red + green) / 2 - blue for red, green, blue in zip(r, g, b, strict=True)]
    q = [red - green for red, green in zip(r, g, strict=True)]
    return luma, p, q, alphas


def _encode_channel(
    channel: list[float], w: int, h: int, nx: int, ny: int
) -> tuple[float, list[float], float]:
    """DC and normalised AC terms of the DCT of one channel, and the AC scale.

    Each term is the reference's `f += channel[i] * fx[x] * fy` over the pixels in order:
    `channel[i] * fx[x]` is made once per `cx` (the float products are the same whatever
    `cy` is), times `fy` by `map`, and summed left to right, all in C.
    """
    dc, ac, scale = 0.0, [], 0.0
    by_fx: dict[int, list[float]] = {}
    for cy in range(ny):
        fy = [v for v in _cosines(h, cy) for _ in range(w)]
        cx = 0
        while cx * ny < nx * (ny - cy):
            if cx not in by_fx:
                by_fx[cx] = list(map(mul, channel, _cosines(w, cx) * h))
            f = _sum(map(mul, by_fx[cx], fy)) / (w * h)
            if cx or cy:
                ac.append(f)
                scale = max(scale, abs(f))
            else:
                dc = f
            cx += 1
    if scale:
        ac = [0.5 + 0.5 / scale * f for f in ac]
    return dc, ac, scale


@lru_cache(maxsize=256)
def _cosines(size: int, c: int) -> tuple[float, ...]:
    """`cos(PI / size * c * (i + 0.5))` for i below `size`, as the reference's loops have them
    (a worker meets few sizes: 100 and the other side of its thumbnails)."""
    return tuple(js_cos(math.pi / size * c * (i + 0.5)) for i in range(size))


def _sum(values: Iterable[float]) -> float:
    """`0 + v0 + v1 + ...` strictly in order, as the reference's loops add (the builtin
    `sum` of floats compensates rounding errors since Python 3.12)."""
    return deque(accumulate(values, initial=0.0), maxlen=1)[0]


def _js_round(value: float) -> int:
    """JavaScript's Math.round: the nearest integer, halves towards +infinity."""
    floor = math.floor(value)
    return int(floor + 1 if value - floor >= 0.5 else floor)


def _clamp(value: float) -> float:
    return max(0.0, min(1.0, value))


# ---- Math.cos as Node has it: V8's port of fdlibm 5.3 (s_cos.c, e_rem_pio2.c, k_cos.c,
# k_sin.c). The C library's cos differs from it in the last bit for some arguments, which
# flips a term that sits on a rounding edge (flat or symmetric images have many).
#
# Copyright (C) 1993 by Sun Microsystems, Inc. All rights reserved.
# Developed at SunSoft, a Sun Microsystems, Inc. business.
# Permission to use, copy, modify, and distribute this software is freely granted,
# provided that this notice is preserved.

_PIO2_1, _PIO2_1T = 1.57079632673412561417e00, 6.07710050650619224932e-11
_PIO2_2, _PIO2_2T = 6.07710050630396597660e-11, 2.02226624879595063154e-21
_PIO2_3, _PIO2_3T = 2.02226624871116645580e-21, 8.47842766036889956997e-32
_INVPIO2 = 6.36619772367581382433e-01
# High words of n * pi/2 for n = 1..32: arguments near them need a finer reduction.
_NPIO2_HW = (
    0x3FF921FB, 0x400921FB, 0x4012D97C, 0x401921FB, 0x401F6A7A, 0x4022D97C,
    0x4025FDBB, 0x402921FB, 0x402C463A, 0x402F6A7A, 0x4031475C, 0x4032D97C,
    0x40346B9C, 0x4035FDBB, 0x40378FDB, 0x403921FB, 0x403AB41B, 0x403C463A,
    0x403DD85A, 0x403F6A7A, 0x40407E4C, 0x4041475C, 0x4042106C, 0x4042D97C,
    0x4043A28C, 0x40446B9C, 0x404534AC, 0x4045FDBB, 0x4046C6CB, 0x40478FDB,
    0x404858EB, 0x404921FB,
)  # fmt: skip
_C1, _C2 = 4.16666666666666019037e-02, -1.38888888888741095749e-03
_C3, _C4 = 2.48015872894767294178e-05, -2.75573143513906633035e-07
_C5, _C6 = 2.08757232129817482790e-09, -1.13596475577881948265e-11
_S1, _S2 = -1.66666666666666324348e-01, 8.33333333332248946124e-03
_S3, _S4 = -1.98412698298579493134e-04, 2.75573137070700676789e-06
_S5, _S6 = -2.50507602534068634195e-08, 1.58969099521155010221e-10


def js_cos(x: float) -> float:
    """cos(x) bit for bit as Node's Math.cos, for |x| up to 2**19 * pi/2 (the reference's
    arguments stay under 6 pi); beyond that (never here) the C library's."""
    ix = _high_word(x) & 0x7FFFFFFF
    if ix <= 0x3FE921FB:  # |x| <= pi/4
        return _kernel_cos(x, 0.0)
    if ix > 0x413921FB:
        return math.cos(x)
    n, y0, y1 = _rem_pio2(x)
    quadrant = n & 3
    if quadrant == 0:
        return _kernel_cos(y0, y1)
    if quadrant == 1:
        return -_kernel_sin(y0, y1)
    if quadrant == 2:
        return -_kernel_cos(y0, y1)
    return _kernel_sin(y0, y1)


def _rem_pio2(x: float) -> tuple[int, float, float]:
    """n and x - n * pi/2 as a sum of two doubles (medium-sized |x| only)."""
    hx = _high_word(x)
    negative, ix = hx >> 31, hx & 0x7FFFFFFF
    if ix < 0x4002D97C:  # |x| < 3pi/4: n is 1 or -1
        sign = -1.0 if negative else 1.0
        z = x - sign * _PIO2_1
        if ix != 0x3FF921FB:  # 33+53 bits of pi are enough
            y0 = z - sign * _PIO2_1T
            return (-1 if negative else 1), y0, (z - y0) - sign * _PIO2_1T
        z -= sign * _PIO2_2  # near pi/2: 33+33+53 bits
        y0 = z - sign * _PIO2_2T
        return (-1 if negative else 1), y0, (z - y0) - sign * _PIO2_2T
    t = abs(x)
    n = int(t * _INVPIO2 + 0.5)
    fn = float(n)
    r = t - fn * _PIO2_1
    w = fn * _PIO2_1T  # the first round is good to 85 bits
    y0 = r - w
    if n >= 32 or ix == _NPIO2_HW[n - 1]:
        j = ix >> 20
        if j - ((_high_word(y0) >> 20) & 0x7FF) > 16:  # a second round, good to 118 bits
            t = r
            w = fn * _PIO2_2
            r = t - w
            w = fn * _PIO2_2T - ((t - r) - w)
            y0 = r - w
            if j - ((_high_word(y0) >> 20) & 0x7FF) > 49:  # a third, 151 bits
                t = r
                w = fn * _PIO2_3
                r = t - w
                w = fn * _PIO2_3T - ((t - r) - w)
                y0 = r - w
    y1 = (r - y0) - w
    return (-n, -y0, -y1) if negative else (n, y0, y1)


def _kernel_cos(x: float, y: float) -> float:
    """cos(x + y) for |x| <= pi/4, y the tail of x."""
    ix = _high_word(x) & 0x7FFFFFFF
    if ix < 0x3E400000 and int(x) == 0:  # |x| < 2**-27
        return 1.0
    z = x * x
    r = z * (_C1 + z * (_C2 + z * (_C3 + z * (_C4 + z * (_C5 + z * _C6)))))
    if ix < 0x3FD33333:  # |x| < 0.3
        return 1.0 - (0.5 * z - (z * r - x * y))
    qx = 0.28125 if ix > 0x3FE90000 else _from_high_word(ix - 0x00200000)  # x/4, cut
    iz = 0.5 * z - qx
    a = 1.0 - qx
    return a - (iz - (z * r - x * y))


def _kernel_sin(x: float, y: float) -> float:
    """sin(x + y) for |x| <= pi/4, y the tail of x (not zero)."""
    ix = _high_word(x) & 0x7FFFFFFF
    if ix < 0x3E400000 and int(x) == 0:  # |x| < 2**-27
        return x
    z = x * x
    v = z * x
    r = _S2 + z * (_S3 + z * (_S4 + z * (_S5 + z * _S6)))
    return x - ((z * (0.5 * y - v * r) - y) - v * _S1)


def _high_word(x: float) -> int:
    return int(struct.unpack("<Q", struct.pack("<d", x))[0] >> 32)


def _from_high_word(high: int) -> float:
    return float(struct.unpack("<d", struct.pack("<Q", high << 32))[0])
