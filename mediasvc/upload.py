"""Streaming multipart/form-data: a push parser turns body chunks into fields and spool files.

Field order does not matter; file bytes never sit in memory beyond one batch; the per-type
size limit is enforced while the bytes arrive, from the extension and then the sniffed type.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass

import magic
import multipart

from mediasvc.errors import BadRequest, TooLarge
from mediasvc.media_types import FileKind, extension_of, kind_for_extension, sniff_agrees
from mediasvc.settings import MB, Settings
from mediasvc.sniffing import SNIFF_BYTES, SniffWindow
from mediasvc.spool import SpoolWriter

__all__ = ["SNIFF_BYTES", "MultipartReceiver", "ReceivedFile", "size_error", "sniff"]
_BOUNDARY = re.compile(r"""boundary=(?:"([^"]{1,200})"|([^\s;,"]{1,200}))""", re.IGNORECASE)


@dataclass
class ReceivedFile:
    """One file of a form, spooled to disk and checked."""

    raw_filename: str
    kind: FileKind
    spool: SpoolWriter
    sha256: str = ""

    @property
    def size(self) -> int:
        """Bytes received."""
        return self.spool.size


@dataclass
class _FilePart:
    received: ReceivedFile
    limit: int
    window: SniffWindow
    sniffed: bool = False


class _Skipped:
    """A rejected file part whose remaining bytes are read and dropped."""


def boundary_of(content_type: str | None) -> str:
    """The multipart boundary of a Content-Type header, or a 400."""
    main_type = (content_type or "").split(";", 1)[0].strip().lower()
    if main_type != "multipart/form-data":
        raise BadRequest("Request body must be multipart/form-data")
    match = _BOUNDARY.search(content_type or "")
    if not match:
        raise BadRequest("multipart/form-data without a boundary")
    return match.group(1) or match.group(2)


def size_error(media_type: str, limit: int) -> TooLarge:
    """The spec's 413 message."""
    return TooLarge(
        f"File size exceeds maximum allowed size of {limit / MB:.1f}MB for {media_type} files"
    )


def sniff_window(kind: FileKind, settings: Settings) -> SniffWindow:
    """Where to sniff a file of this kind: audio after its leading ID3 tags."""
    skip = kind.media_type == "audio"
    return SniffWindow(skip_tags=skip, max_skip=settings.sniff_max_tag_size)


def sniff(head: bytes) -> str:
    """The MIME type libmagic reads from the first bytes of a file."""
    return str(magic.from_buffer(head, mime=True))


class MultipartReceiver:
    """Consumes a multipart body chunk by chunk.

    `file_fields` names the parts that may carry files and `max_files` how many;
    `before_file` sees the fields received so far when a file starts, so a request
    that cannot succeed (no permission, bad entity) is refused before its bytes are read.
    With `per_file_errors`, a bad file (type, size, emptiness) is set aside in `rejected`
    and its bytes skipped, while the other files go on; the form itself must still be sound.
    """

    def __init__(
        self,
        boundary: str,
        settings: Settings,
        executor: Executor,
        *,
        file_fields: frozenset[str] = frozenset({"file"}),
        max_files: int = 1,
        before_file: Callable[[dict[str, str]], None] | None = None,
        per_file_errors: bool = False,
    ) -> None:
        self._settings = settings
        self._executor = executor
        self._file_fields = file_fields
        self._max_files = max_files
        self._before_file = before_file
        self._per_file_errors = per_file_errors
        self.fields: dict[str, str] = {}
        self.files: list[ReceivedFile] = []
        self.rejected: list[dict[str, str]] = []
        self._field_name: str | None = None
        self._field_value = bytearray()
        self._file: _FilePart | _Skipped | None = None
        try:
            self._parser = multipart.PushMultipartParser(
                boundary,
                max_header_size=settings.max_part_header_size,
                max_segment_count=settings.max_form_parts + max_files,
            )
        except multipart.MultipartError as exc:
            raise _malformed(exc) from None

    def feed(self, chunk: bytes) -> Awaitable[None] | None:
        """Parse one chunk of the body, spooling file bytes. Most chunks are dealt with at
        once; something to await comes back only when the spool must wait for a batch being
        written or a file ends, and the rest of the chunk is parsed after it."""
        events = self._parser.parse(chunk)
        try:
            for event in events:
                pending = self._on_event(event)
                if pending is not None:
                    return self._feed_after(pending, events)
        except multipart.MultipartError as exc:
            raise _malformed(exc) from None
        return None

    async def _feed_after(
        self, pending: Awaitable[None], events: Iterator[multipart.MultipartSegment | bytes | None]
    ) -> None:
        await pending
        try:
            for event in events:
                pending_now = self._on_event(event)
                if pending_now is not None:
                    await pending_now
        except multipart.MultipartError as exc:
            raise _malformed(exc) from None

    async def close(self) -> None:
        """The body ended: the stream must be complete; finish the spool files."""
        try:
            self._parser.close()
        except multipart.MultipartError:
            raise BadRequest("Malformed multipart body: no closing boundary") from None
        for received in self.files:
            if not received.sha256:
                raise BadRequest("Malformed multipart body: incomplete file part")

    def discard(self) -> None:
        """Remove every spool file (failure, disconnect, or after storing)."""
        for received in self.files:
            received.spool.discard()

    def _on_event(self, event: multipart.MultipartSegment | bytes | None) -> Awaitable[None] | None:
        part = self._file
        if isinstance(event, multipart.MultipartSegment):
            self._start_part(event)
        elif isinstance(part, _Skipped):
            if event is None:
                self._file = None
        elif part is None:
            if event is None:
                self._end_field()
            else:
                self._field_bytes(event)
        else:
            # A file's own faults (type, size, emptiness) are found here, before anything is
            # awaited; what an await raises is the spool's (a full disk), never the file's.
            try:
                return self._end_file(part) if event is None else self._file_bytes(part, event)
            except (BadRequest, TooLarge) as exc:
                if not self._per_file_errors:
                    raise
                self._reject(part, exc.message, ended=event is None)
        return None

    def _reject(self, part: _FilePart, message: str, *, ended: bool) -> None:
        part.received.spool.discard()
        self.files.remove(part.received)
        self.rejected.append({"filename": _printable(part.received.raw_filename), "error": message})
        self._file = None if ended else _Skipped()

    def _start_part(self, segment: multipart.MultipartSegment) -> None:
        name = segment.name or ""
        if segment.filename is None:
            if name in self._file_fields:
                raise BadRequest(f"Field '{name}' must be a file")
            if name in self.fields:
                raise BadRequest(f"Field '{_printable(name)}' was sent twice")
            self._field_name = name
            self._field_value.clear()
            return
        if name not in self._file_fields:
            raise BadRequest(f"Unexpected file in field '{_printable(name)}'")
        if len(self.files) + len(self.rejected) >= self._max_files:
            raise BadRequest(f"At most {self._max_files} file(s) per request")
        if self._before_file is not None:
            self._before_file(self.fields)
        try:
            self._file = self._open_file(name, segment.filename)
        except BadRequest as exc:
            if not self._per_file_errors:
                raise
            self.rejected.append({"filename": _printable(segment.filename), "error": exc.message})
            self._file = _Skipped()

    def _open_file(self, name: str, filename: str) -> _FilePart:
        extension = extension_of(filename)
        kind = kind_for_extension(extension)
        if kind is None:
            if not extension:
                raise BadRequest("File name has no extension")
            raise BadRequest(f"File extension '{_printable(extension)[:32]}' is not allowed")
        spool = SpoolWriter(self._settings.spool_path, self._executor, suffix=f".{kind.extension}")
        received = ReceivedFile(raw_filename=filename, kind=kind, spool=spool)
        self.files.append(received)
        window = sniff_window(kind, self._settings)
        return _FilePart(received, limit=self._settings.size_limit(kind.media_type), window=window)

    def _file_bytes(self, part: _FilePart, data: bytes) -> Awaitable[None] | None:
        if part.received.size + len(data) > part.limit:
            raise size_error(part.received.kind.media_type, part.limit)
        if not part.sniffed and part.window.feed(data):
            self._check_sniffed(part)
        return part.received.spool.queue(data)

    def _field_bytes(self, data: bytes) -> None:
        if len(self._field_value) + len(data) > self._settings.max_field_size:
            raise BadRequest(f"Field '{_printable(self._field_name or '')}' is too long")
        self._field_value += data

    def _end_file(self, part: _FilePart) -> Awaitable[None]:
        self._file = None
        if part.received.size == 0:
            raise BadRequest("The submitted file is empty")
        if not part.sniffed:
            self._check_sniffed(part)
        return _finish_spool(part.received)

    def _end_field(self) -> None:
        name, self._field_name = self._field_name or "", None
        try:
            self.fields[name] = self._field_value.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest(f"Field '{_printable(name)}' is not valid UTF-8") from None

    def _check_sniffed(self, part: _FilePart) -> None:
        part.sniffed = True
        head = part.window.head
        sniffed = sniff(head)
        kind = part.received.kind
        if not sniff_agrees(kind, sniffed, head):
            raise BadRequest(
                f"File content ({sniffed}) does not match its extension '{kind.extension}'"
            )


async def _finish_spool(received: ReceivedFile) -> None:
    received.sha256 = await received.spool.finish()


def _malformed(exc: multipart.MultipartError) -> BadRequest:
    """The parser's complaint as a 400."""
    return BadRequest(f"Malformed multipart body: {_parser_reason(exc)}")


def _parser_reason(exc: Exception) -> str:
    """The parser's own short sentence, never the bytes it choked on."""
    first = exc.args[0] if exc.args and isinstance(exc.args[0], str) else "invalid part"
    return _printable(first)


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() else "?" for ch in text)[:64]
