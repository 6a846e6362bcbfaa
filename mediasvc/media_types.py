"""What may be uploaded: extension allow-lists, the types libmagic may report for each,
and the canonical Content-Type the service stores and serves."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args

MediaType = Literal["image", "video", "document", "audio"]
MEDIA_TYPES: tuple[MediaType, ...] = get_args(MediaType)


@dataclass(frozen=True)
class FileKind:
    """One allowed extension: its media type, canonical Content-Type and sniffable types."""

    extension: str
    media_type: str
    content_type: str
    sniffed: frozenset[str]


def _kind(ext: str, media_type: str, content_type: str, *sniffed: str) -> FileKind:
    # MIME types compare case-insensitively: kept lower-case here, lowered when compared.
    names = frozenset(name.lower() for name in (content_type, *sniffed))
    return FileKind(ext, media_type, content_type, names)


_ZIP = ("application/zip", "application/octet-stream")
_ISO_BMFF = ("video/mp4", "audio/mp4", "audio/x-m4a", "video/quicktime", "video/3gpp")

KINDS: dict[str, FileKind] = {
    k.extension: k
    for k in (
        _kind("jpg", "image", "image/jpeg"),
        _kind("jpeg", "image", "image/jpeg"),
        _kind("png", "image", "image/png"),
        _kind("gif", "image", "image/gif"),
        _kind("webp", "image", "image/webp"),
        _kind("svg", "image", "image/svg+xml"),
        _kind(
            "heic",
            "image",
            "image/heic",
            "image/heif",
            "image/heic-sequence",
            "image/heif-sequence",
        ),
        _kind(
            "heif",
            "image",
            "image/heif",
            "image/heic",
            "image/heif-sequence",
            "image/heic-sequence",
        ),
        _kind("avif", "image", "image/avif", "image/avif-sequence"),
        _kind("mp4", "video", "video/mp4", *_ISO_BMFF),
        _kind("mov", "video", "video/quicktime", "video/mp4"),
        _kind("avi", "video", "video/x-msvideo", "video/avi"),
        _kind("webm", "video", "video/webm", "video/x-matroska"),
        _kind("mkv", "video", "video/x-matroska", "video/webm"),
        _kind("pdf", "document", "application/pdf"),
        _kind(
            "doc",
            "document",
            "application/msword",
            "application/vnd.ms-office",
            "application/CDFV2",
            "application/x-ole-storage",
        ),
        _kind(
            "docx",
            "document",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            *_ZIP,
        ),
        _kind("txt", "document", "text/plain"),
        _kind("odt", "document", "application/vnd.oasis.opendocument.text", *_ZIP),
        _kind("rtf", "document", "application/rtf", "text/rtf"),
        _kind("mp3", "audio", "audio/mpeg", "audio/mp3", "audio/x-mp3"),
        _kind("wav", "audio", "audio/wav", "audio/x-wav", "audio/vnd.wave", "audio/wave"),
        _kind("ogg", "audio", "audio/ogg", "application/ogg", "audio/x-vorbis+ogg", "audio/opus"),
        _kind("aac", "audio", "audio/aac", "audio/x-hx-aac-adts", "audio/x-aac"),
        _kind("m4a", "audio", "audio/mp4", "audio/x-m4a", "video/mp4", "audio/m4a"),
        _kind("flac", "audio", "audio/flac", "audio/x-flac"),
    )
}

# Plain text may sniff as any text/* subtype (csv, x-c, ...); it is always served as text/plain.
_TEXT_EXTENSIONS = frozenset({"txt"})
# SVG may sniff as generic XML or text; then the document itself must open with <svg>.
_SVG_FALLBACKS = frozenset({"text/xml", "application/xml", "text/plain"})
_SVG_START = re.compile(
    rb"\s*(<\?xml[^>]*>\s*)?((<!--.*?-->|<!DOCTYPE\s+svg[^>]*>)\s*)*<svg[\s>]", re.DOTALL
)
_TEXT_BYTES = re.compile(rb"[^\x00-\x08\x0b\x0e-\x1f\x7f]*")

# Media types whose files a browser may render inline; everything else is served as an attachment.
INLINE_PREFIXES = ("audio/", "video/")
INLINE_IMAGES = frozenset(
    {"image/jpeg", "image/png", "image/gif", "image/webp", "image/avif", "image/heic", "image/heif"}
)


def extension_of(filename: str) -> str:
    """Lower-case extension without the dot, or '' when there is none."""
    base = filename.rsplit("/", 1)[-1]
    if "." not in base:
        return ""
    return base.rsplit(".", 1)[-1].lower()


def kind_for_extension(extension: str) -> FileKind | None:
    """The allowed kind of an extension, or None when the extension is not allowed."""
    return KINDS.get(extension.lower())


def sniff_agrees(kind: FileKind, sniffed: str, head: bytes) -> bool:
    """Whether the type libmagic found in the first bytes fits the extension's kind."""
    sniffed = sniffed.lower()
    if kind.extension == "svg":
        return (sniffed in kind.sniffed or sniffed in _SVG_FALLBACKS) and bool(
            _SVG_START.match(head)
        )
    if sniffed in kind.sniffed:
        return True
    if kind.extension in _TEXT_EXTENSIONS:
        return (sniffed.startswith("text/") and sniffed != "text/html") or _plain_text(head)
    return False


def _plain_text(head: bytes) -> bool:
    # libmagic calls very short text "application/octet-stream"; UTF-8 without controls is text.
    if not _TEXT_BYTES.fullmatch(head):
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3  # only a character cut off at the sniff boundary
    return True


def served_inline(content_type: str) -> bool:
    """Raster images, audio and video may be shown inline; SVG and documents may not."""
    return content_type in INLINE_IMAGES or content_type.startswith(INLINE_PREFIXES)
