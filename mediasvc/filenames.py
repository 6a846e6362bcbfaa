"""Client filenames are metadata only; this makes them safe to store and show."""

from __future__ import annotations

import unicodedata

# Bidirectional overrides and isolates can make "gpj.exe" read as "exe.jpg".
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_INVISIBLE = frozenset("\u200b\u200c\u200d\u2060\ufeff")


def clean_filename(raw: str, extension: str, max_bytes: int) -> str:
    """Strip path parts, control, bidi and invisible characters; fit into `max_bytes` of UTF-8.

    The extension is kept, so a shortened name still ends as the stored file does.
    """
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = unicodedata.normalize("NFC", name)
    name = "".join(ch for ch in name if _keep(ch))
    name = " ".join(name.split()).strip(" .")
    if not name or name.lower() == extension:
        name = f"upload.{extension}"
    return _fit(name, extension, max_bytes)


def _keep(ch: str) -> bool:
    if ch in _BIDI or ch in _INVISIBLE:
        return False
    return unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn")


def _fit(name: str, extension: str, max_bytes: int) -> str:
    if len(name.encode()) <= max_bytes:
        return name
    suffix = f".{extension}" if extension else ""
    stem = name[: -len(suffix)] if suffix and name.lower().endswith(suffix) else name
    budget = max_bytes - len(suffix.encode())
    encoded = stem.encode()[:budget]
    return encoded.decode("utf-8", errors="ignore").rstrip(" .") + suffix
