"""The one settings schema: every knob and limit, with its default, help and group.

Values come from the defaults, then an optional TOML config file, then environment
variables ``MEDIASVC_<NAME>``, then command-line flags. Anything invalid stops start-up
with a :class:`SettingsError` that names the setting.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "MEDIASVC_"
# Variables of the same prefix that are no settings: the token `mediasvc upload` sends (a
# shell that exports it must still be able to run the other commands).
CLIENT_VARIABLES = frozenset({"MEDIASVC_TOKEN"})
MB = 1024 * 1024

_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": MB, "mb": MB, "mib": MB}
_SIZE_UNITS.update({"g": MB * 1024, "gb": MB * 1024, "gib": MB * 1024})


class SettingsError(ValueError):
    """A setting has a value it cannot take; the message names the setting."""


def setting(
    default: Any,
    help: str,
    group: str,
    *,
    kind: str = "",
    minimum: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] = (),
    secret: bool = False,
) -> Any:
    """Declare one setting; the metadata is what `mediasvc config` and the example print."""
    meta = {
        "help": help,
        "group": group,
        "kind": kind,
        "minimum": minimum,
        "maximum": maximum,
        "choices": choices,
        "secret": secret,
    }
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Settings:
    """Effective settings of one process. Build with :func:`load_settings`."""

    # -- server
    host: str = setting("127.0.0.1", "Address the HTTP server listens on.", "server")
    port: int = setting(8000, "TCP port of the HTTP server.", "server", minimum=0, maximum=65535)
    data_dir: str = setting(
        "./var", "Folder that holds all local state: database, files, spool, secrets.", "server"
    )
    public_url: str = setting(
        "",
        "Absolute base URL clients reach the service at (e.g. https://media.example.com). "
        "Empty: taken from each request's Host header.",
        "server",
    )
    xheaders: bool = setting(
        False, "Trust X-Forwarded-For/-Proto and X-Real-Ip from a reverse proxy.", "server"
    )
    log_level: str = setting(
        "info", "Log level.", "server", choices=("debug", "info", "warning", "error")
    )
    startup_timeout: float = setting(
        30.0, "Seconds to wait at start-up for the database to answer.", "server", minimum=0
    )
    shutdown_timeout: float = setting(
        30.0,
        "Seconds a stopping process gives in-flight requests (then running jobs) to finish; "
        "unfinished jobs are handed back to the queue. Keep supervisord's stopwaitsecs above "
        "twice this.",
        "server",
        minimum=0,
    )
    io_threads: int = setting(
        8, "Threads for blocking file-system and storage calls.", "server", minimum=1, maximum=256
    )
    console_enabled: bool = setting(
        True,
        "Serve the web console at /console/ (and lead / there). Off: those paths are 404 and "
        "only the API, the file URLs and the operations routes are served.",
        "server",
    )
    # -- cors
    cors_origins: tuple[str, ...] = setting(
        (),
        "Origins whose browser pages may call the API and the upload/file URLs, comma-separated "
        "(e.g. https://app.example.com), or * for any. Empty: no CORS headers at all.",
        "cors",
        kind="list",
    )
    cors_max_age: int = setting(
        600,
        "Seconds a browser may cache a preflight answer (Chromium caps it at 7200).",
        "cors",
        minimum=0,
        maximum=86400,
    )
    # -- database
    mongodb_uri: str = setting(
        "",
        "MongoDB connection URI. Empty: start the embedded wire-protocol server "
        "(data under <data_dir>/db).",
        "database",
        secret=True,
    )
    mongodb_database: str = setting("mediasvc", "Database name.", "database")
    mongodb_timeout_ms: int = setting(
        1500,
        "Server selection and connect timeout of the MongoDB driver, in milliseconds: how "
        "soon an unreachable database turns into a 503.",
        "database",
        minimum=100,
    )
    embedded_db_in_memory: bool = setting(
        False, "Keep the embedded database in memory (tests, throw-away runs).", "database"
    )
    embedded_db_port: int = setting(
        27018,
        "Port of `mediasvc database` (the embedded database run as its own program).",
        "database",
        minimum=1,
        maximum=65535,
    )
    embedded_db_start_timeout: float = setting(
        20.0, "Seconds to wait for the embedded database to answer.", "database", minimum=1
    )
    embedded_db_restart_delay: float = setting(
        0.5,
        "Seconds before the first restart of an embedded database that died; doubled after "
        "each failed start, up to embedded_db_restart_max_delay.",
        "database",
        minimum=0.05,
    )
    embedded_db_restart_max_delay: float = setting(
        30.0, "Longest wait between restarts of the embedded database.", "database", minimum=0.1
    )
    embedded_db_watch_interval: float = setting(
        0.2, "Seconds between looks at whether the embedded database still runs.", "database",
        minimum=0.01,
    )  # fmt: skip
    # -- auth
    jwt_secret: str = setting(
        "",
        "HMAC secret for HS256 tokens. Empty: a random one is created once under "
        "<data_dir>/secrets (mode 0600) and reused.",
        "auth",
        secret=True,
    )
    jwt_algorithms: tuple[str, ...] = setting(
        ("HS256",),
        "Accepted token algorithms, comma-separated (HS256, HS384, HS512, RS256, ES256, ...).",
        "auth",
        kind="list",
    )
    jwt_public_key: str = setting(
        "",
        "PEM public key, or a path to one, for RS*/ES*/PS* tokens.",
        "auth",
    )
    jwt_audience: str = setting("", "Required `aud` claim; empty: not checked.", "auth")
    jwt_issuer: str = setting("", "Required `iss` claim; empty: not checked.", "auth")
    jwt_leeway: int = setting(
        30, "Clock skew allowed when checking `exp`/`nbf`, in seconds.", "auth", minimum=0
    )
    token_default_ttl: int = setting(
        3600, "Lifetime of tokens minted by `mediasvc token`, in seconds.", "auth", minimum=1
    )
    # -- storage
    storage: str = setting(
        "local",
        "Blob store backend: a local folder, or S3-compatible object storage "
        "(AWS S3, Cloudflare R2, SeaweedFS, MinIO).",
        "storage",
        choices=("local", "s3"),
    )
    storage_dir: str = setting(
        "", "Folder of the local blob store. Empty: <data_dir>/media.", "storage"
    )
    spool_dir: str = setting(
        "",
        "Folder for upload spool files (on the file system of storage_dir, files are renamed "
        "into place; elsewhere they are copied). Empty: <data_dir>/spool.",
        "storage",
    )
    url_signing_secret: str = setting(
        "",
        "HMAC secret that signs local file URLs. Empty: created once under <data_dir>/secrets.",
        "storage",
        secret=True,
    )
    file_url_ttl: int = setting(
        3600, "Lifetime of signed file URLs, in seconds.", "storage", minimum=1
    )
    s3_endpoint_url: str = setting(
        "", "S3 endpoint URL (empty: AWS). R2: https://<account>.r2.cloudflarestorage.com.", "s3"
    )
    s3_region: str = setting("us-east-1", "S3 region (R2: auto).", "s3")
    s3_bucket: str = setting("", "Bucket that holds all media.", "s3")
    s3_access_key: str = setting("", "Access key id (empty: the AWS default chain).", "s3")
    s3_secret_key: str = setting("", "Secret access key.", "s3", secret=True)
    s3_addressing_style: str = setting(
        "auto", "Bucket addressing in URLs.", "s3", choices=("auto", "path", "virtual")
    )
    s3_public_base_url: str = setting(
        "",
        "Public base URL of the bucket (a CDN); `url` fields are <base>/<key>. Empty: presigned "
        "GET URLs that expire after file_url_ttl.",
        "s3",
    )
    s3_create_bucket: bool = setting(
        False, "Create the bucket at start-up when it does not exist.", "s3"
    )
    s3_multipart_chunk_size: int = setting(
        16 * MB,
        "Part size of multipart uploads of large originals (also the threshold).",
        "s3",
        kind="size",
        minimum=5 * MB,
    )
    s3_connect_timeout: float = setting(0.5, "Seconds to connect to S3.", "s3", minimum=0.1)
    s3_read_timeout: float = setting(30.0, "Seconds to wait for an S3 answer.", "s3", minimum=0.1)
    s3_max_attempts: int = setting(
        2,
        "Attempts of one S3 call; with s3_connect_timeout this bounds how soon an unreachable "
        "S3 turns into a 503.",
        "s3",
        minimum=1,
    )
    s3_threads: int = setting(
        8, "Threads for S3 transfers (boto3 never runs on the event loop).", "s3", minimum=1
    )
    storage_retry_after: int = setting(
        2,
        "Retry-After seconds of the 503 a request gets when the storage fails (S3 errors, "
        "throttling, timeouts, unreachable; a local folder that refuses writes).",
        "s3",
        minimum=1,
    )
    # -- presigned uploads
    presigned_upload_ttl: int = setting(
        3600, "Seconds a presigned upload URL stays valid.", "uploads", minimum=1
    )
    pending_upload_grace: int = setting(
        300,
        "Seconds after its URL expired before an unconfirmed upload is swept.",
        "uploads",
        minimum=0,
    )
    incomplete_multipart_max_age: int = setting(
        86400,
        "Seconds before an S3 multipart upload that never completed is aborted by the sweep.",
        "uploads",
        minimum=60,
    )
    sweep_interval: float = setting(
        300.0,
        "Seconds between sweeps of expired uploads (0: no periodic sweep).",
        "uploads",
        minimum=0,
    )
    lost_job_grace: int = setting(
        300,
        "Seconds a processing media whose job does not exist (a process died between writing "
        "the two) waits before the sweep queues that job again.",
        "uploads",
        minimum=0,
    )
    max_batch_files: int = setting(
        20, "Most files one batch_upload may carry.", "uploads", minimum=1
    )
    max_batch_size: int = setting(
        1024 * MB, "Largest batch_upload body.", "uploads", kind="size", minimum=MB
    )
    spool_unowned_max_age: float = setting(
        86400.0,
        "Seconds after which spool files and job folders without an owner tag (left by an "
        "older version) are removed by the sweep; tagged ones go as soon as their process is "
        "gone.",
        "uploads",
        minimum=60,
    )
    # -- idempotency keys
    idempotency_ttl: int = setting(
        86400,
        "Seconds the answer to a request with an Idempotency-Key is kept: a retry with the "
        "same key and the same request gets it again (a different request: 422).",
        "idempotency",
        minimum=1,
    )
    idempotency_lease: float = setting(
        30.0,
        "Seconds a running request with an Idempotency-Key holds its key without renewing it "
        "(it renews every third of this while it runs): a retry of a request whose process "
        "died runs again this long after the last renewal; until then it gets 409.",
        "idempotency",
        minimum=0.5,
    )
    idempotency_key_max_length: int = setting(
        255,
        "Longest Idempotency-Key, in characters (a longer or empty one is a 400).",
        "idempotency",
        minimum=1,
        maximum=4096,
    )
    # -- resumable uploads (tus)
    tus_dir: str = setting(
        "",
        "Folder that holds the bytes of unfinished resumable uploads (local storage: the whole "
        "file, renamed into place at the end, so keep it on the file system of storage_dir; "
        "S3: the remainder below one part). Several servers sharing uploads share it. "
        "Empty: <data_dir>/tus.",
        "tus",
    )
    tus_upload_ttl: int = setting(
        86400,
        "Seconds a resumable upload may take from its creation to its last byte; then it "
        "expires (410) and the sweep removes it with everything it received.",
        "tus",
        minimum=60,
    )
    tus_max_chunk_size: int = setting(
        256 * MB,
        "Largest body of one PATCH (or of a creation that carries bytes); larger ones are "
        "refused with 413, so clients send files larger than this in chunks.",
        "tus",
        kind="size",
        minimum=MB,
        maximum=5 * 1024 * MB,
    )
    tus_lease: float = setting(
        60.0,
        "Seconds a PATCH holds its upload's lock without renewing it (it renews while bytes "
        "arrive). A server that died mid-PATCH on another machine holds the upload this long "
        "(others get 423); one of this machine is taken over at once.",
        "tus",
        minimum=5,
    )
    tus_checkpoint_interval: float = setting(
        1.0,
        "Seconds at least between two commits of a long PATCH's progress (local storage; a "
        "commit also waits for 16 MB more). Each pauses the body for an fsync and a database "
        "write; a server that dies mid-PATCH loses at most this long of the client's sending, "
        "or 16 MB. 0: every 16 MB.",
        "tus",
        minimum=0,
    )
    # -- upload limits
    max_image_size: int = setting(
        10 * MB,
        "Largest image upload (bytes; suffixes KB, MB, GB).",
        "limits",
        kind="size",
        minimum=1,
    )
    max_video_size: int = setting(
        500 * MB, "Largest video upload.", "limits", kind="size", minimum=1
    )
    max_document_size: int = setting(
        50 * MB, "Largest document upload.", "limits", kind="size", minimum=1
    )
    max_audio_size: int = setting(
        100 * MB, "Largest audio upload.", "limits", kind="size", minimum=1
    )
    max_form_overhead: int = setting(
        1 * MB,
        "Bytes a multipart body may carry beyond its file (fields, headers, boundaries).",
        "limits",
        kind="size",
        minimum=1024,
    )
    max_form_parts: int = setting(
        16, "Most parts one multipart upload may have.", "limits", minimum=1
    )
    max_part_header_size: int = setting(
        4096, "Longest header line of one multipart part, in bytes.", "limits", minimum=256
    )
    max_field_size: int = setting(
        16 * 1024, "Largest non-file form field, in bytes.", "limits", kind="size", minimum=256
    )
    max_json_body_size: int = setting(
        1 * MB, "Largest JSON request body.", "limits", kind="size", minimum=1024
    )
    max_filename_bytes: int = setting(
        255, "Longest stored filename, in UTF-8 bytes.", "limits", minimum=16
    )
    max_title_length: int = setting(255, "Longest title, in characters.", "limits", minimum=1)
    max_description_length: int = setting(
        5000, "Longest description, in characters.", "limits", minimum=1
    )
    max_alt_text_length: int = setting(
        1000, "Longest alt text, in characters.", "limits", minimum=1
    )
    max_display_order: int = setting(
        1_000_000, "Largest display_order (0 is the smallest).", "limits", minimum=0
    )
    max_search_length: int = setting(
        200, "Longest `search` query parameter, in characters.", "limits", minimum=1
    )
    default_page_size: int = setting(
        20, "Results per page when `limit` is not given.", "limits", minimum=1
    )
    max_page_size: int = setting(
        100, "Largest `limit` a list request may ask for.", "limits", minimum=1
    )
    max_bulk_ids: int = setting(
        100, "Most media ids one bulk_delete or bulk_update may name.", "limits", minimum=1
    )
    max_check_files: int = setting(
        100,
        "Most files one `check` request may ask about (one indexed query each).",
        "limits",
        minimum=1,
        maximum=10000,
    )
    sniff_max_tag_size: int = setting(
        16 * MB,
        "Largest leading ID3v2 tag (cover art) of an audio upload skipped to sniff its real "
        "content; a file whose tags run longer is refused. A presigned confirm reads that far.",
        "limits",
        kind="size",
        minimum=0,
    )
    # -- http
    reuse_port: bool = setting(
        False,
        "Bind with SO_REUSEPORT so several server processes share one port (supervisord).",
        "http",
    )
    max_concurrent_uploads: int = setting(
        32,
        "Uploads (direct, batch, presigned PUT) one process streams at once; more wait "
        "(upload_slot_wait), then get 429.",
        "http",
        minimum=1,
    )
    metrics_dir: str = setting(
        "",
        "Folder where the processes of one machine share Prometheus metrics (memory-mapped "
        "files: keep it off the disk uploads fill). Empty: /dev/shm/mediasvc-metrics-<hash of "
        "data_dir>, or <data_dir>/metrics where there is no /dev/shm.",
        "http",
    )
    idle_connection_timeout: float = setting(
        60.0, "Seconds an idle keep-alive connection stays open.", "http", minimum=1
    )
    body_timeout: float = setting(
        600.0, "Seconds a client may take to send one request body.", "http", minimum=1
    )
    http_chunk_size: int = setting(
        256 * 1024,
        "Bytes read from a connection at a time while streaming a body.",
        "http",
        kind="size",
        minimum=4096,
    )
    # http (early answers, upload slots)
    max_header_size: int = setting(
        64 * 1024,
        "Largest request header block (request line and headers); larger ones get a 431 "
        "(beyond 4 times this, the connection is closed unanswered).",
        "http",
        kind="size",
        minimum=4096,
    )
    linger_timeout: float = setting(
        30.0,
        "Seconds a connection answered before its body was read goes on reading and "
        "discarding that body, so the client reads the answer instead of a reset (as nginx's "
        "lingering_time).",
        "http",
        minimum=0,
    )
    linger_idle_timeout: float = setting(
        5.0,
        "Seconds of silence from the client that end such draining early (as nginx's "
        "lingering_timeout).",
        "http",
        minimum=0,
    )
    linger_max_bytes: int = setting(
        1024 * MB,
        "Most body bytes drained after an early answer; past that the connection is closed.",
        "http",
        kind="size",
        minimum=0,
    )
    upload_slot_wait: float = setting(
        10.0,
        "Seconds an upload over max_concurrent_uploads waits for a slot (its body unread) "
        "before it gets 429 with Retry-After.",
        "http",
        minimum=0,
    )
    upload_stall_timeout: float = setting(
        30.0,
        "Seconds an upload's body (direct, batch, presigned PUT) may send nothing before it "
        "is answered 408 and cut off, freeing its upload slot.",
        "http",
        minimum=0.1,
    )

    # -- processing
    processing_enabled: bool = setting(
        True,
        "Run a job dispatcher and worker pool in this process (off: an API-only node; "
        "run `mediasvc worker` elsewhere).",
        "processing",
    )
    workers: int = setting(
        2, "Worker processes in this process's pool.", "processing", minimum=1, maximum=256
    )
    worker_tasks_per_child: int = setting(
        100,
        "Jobs a worker process runs before it is replaced (bounds leaks in libvips/ffmpeg).",
        "processing",
        minimum=1,
    )
    worker_start_method: str = setting(
        "forkserver",
        "How worker processes start.",
        "processing",
        choices=("forkserver", "spawn"),
    )
    worker_memory_limit: int = setting(
        3 * 1024 * MB,
        "Address-space limit of each worker process (0: none); a job over it fails alone.",
        "processing",
        kind="size",
        minimum=0,
    )
    job_timeout: float = setting(
        300.0,
        "Seconds one job may run before its worker is killed.",
        "processing",
        minimum=1,
    )
    job_lease: float = setting(
        60.0,
        "Seconds a claimed job stays ours without a heartbeat; after that any node reclaims it.",
        "processing",
        minimum=2,
    )
    job_max_attempts: int = setting(
        3, "Attempts (crashes, timeouts, restarts) before a job fails.", "processing", minimum=1
    )
    max_queued_jobs: int = setting(
        4,
        "Jobs one process holds at once (running or waiting for a worker).",
        "processing",
        minimum=1,
    )
    dispatcher_poll_interval: float = setting(
        1.0, "Seconds between looks for new jobs when idle.", "processing", minimum=0.05
    )
    image_operations: tuple[str, ...] = setting(
        ("thumbnail", "optimize"),
        "Operations every image upload gets (thumbnail, optimize; empty: none).",
        "processing",
        kind="list",
    )
    video_operations: tuple[str, ...] = setting(
        ("thumbnail", "optimize"),
        "Operations every video upload gets (thumbnail, optimize; empty: none).",
        "processing",
        kind="list",
    )
    thumbnail_size: int = setting(
        320, "Long side of thumbnails, in pixels.", "processing", minimum=16, maximum=4096
    )
    max_image_pixels: int = setting(
        100_000_000,
        "Largest image (width x height) processed; checked from the header before decoding.",
        "processing",
        minimum=1,
    )
    max_animation_frames: int = setting(
        1000, "Most frames of an animated image processed.", "processing", minimum=1
    )
    max_resize_dimension: int = setting(
        8192, "Largest width or height a resize may ask for.", "processing", minimum=16
    )
    video_max_height: int = setting(
        720, "Height of the optimized video copy (never upscaled).", "processing", minimum=64
    )
    waveform_size: str = setting(
        "800x160", "Width x height of audio waveform images.", "processing"
    )
    max_animation_pixels: int = setting(
        400_000_000,
        "Most pixels of an animated image over all its frames (width x height x frames); "
        "checked from the header before decoding.",
        "processing",
        minimum=1,
    )
    max_video_pixels: int = setting(
        8192 * 4320,
        "Largest video frame (width x height) processed; checked by ffprobe before decoding.",
        "processing",
        minimum=1,
    )
    max_video_duration: float = setting(
        3600.0,
        "Longest video processed, in seconds; checked by ffprobe before decoding.",
        "processing",
        minimum=1,
    )
    max_video_frames: int = setting(
        216_000,
        "Most frames of a video processed (as the container counts them, else duration x "
        "frame rate); checked by ffprobe before decoding.",
        "processing",
        minimum=1,
    )
    max_pdf_pages: int = setting(
        2000, "Most pages of a PDF processed; checked before rendering.", "processing", minimum=1
    )
    max_pdf_page_pixels: int = setting(
        25_000_000,
        "Largest first page of a PDF, in pixels at 72 dpi (points x points); checked before "
        "rendering.",
        "processing",
        minimum=1,
    )
    svg_render_size: int = setting(
        2048,
        "Long side of the raster `optimize` draws an SVG into (SVGs are drawn at the size "
        "each operation needs, never at their declared size; never upscaled).",
        "processing",
        minimum=16,
        maximum=16384,
    )
    job_cpu_limit: float = setting(
        120.0,
        "CPU seconds one job may use, its worker and ffmpeg together (RLIMIT_CPU, counted in "
        "whole seconds: a job is stopped up to about 1 s past it); a job over it fails at "
        "once, without a retry. Keep it below job_timeout. 0: no limit.",
        "processing",
        minimum=0,
    )
    svg_cpu_limit: float = setting(
        10.0,
        "CPU seconds one SVG job may use (no header tells what drawing an SVG costs).",
        "processing",
        minimum=0.1,
    )
    max_heavy_jobs: int = setting(
        0,
        "Heavy jobs (video, audio, PDF, SVG, GIF and WebP) this process runs at once; the "
        "other workers stay free for still images, so those never wait behind heavy ones. "
        "0: all workers but one (at least one).",
        "processing",
        minimum=0,
    )

    # -- webhooks
    webhook_allow_private: bool = setting(
        False,
        "Let webhook endpoints be loopback, private, link-local or other non-public addresses "
        "(checked on the address connected to, after DNS, and for IP literals at creation). "
        "Off: only public addresses.",
        "webhooks",
    )
    webhook_send_enabled: bool = setting(
        True,
        "Send webhook deliveries from this process (off: it still records events and turns "
        "them into deliveries, which processes with this on send; e.g. only nodes in a subnet "
        "that reaches nothing internal).",
        "webhooks",
    )
    webhook_timeout: float = setting(
        15.0,
        "Seconds one delivery attempt may take in all (DNS, connect, TLS, request, answer).",
        "webhooks",
        minimum=0.1,
        maximum=300,
    )
    webhook_max_response_bytes: int = setting(
        64 * 1024,
        "Most bytes of a receiver's answer body read; the rest is not read (the status counts).",
        "webhooks",
        kind="size",
        minimum=0,
    )
    webhook_concurrency: int = setting(
        8, "Deliveries one process sends at once.", "webhooks", minimum=1, maximum=1024
    )
    webhook_lease: float = setting(
        60.0,
        "Seconds a claimed delivery stays with the process sending it; one whose process died "
        "is claimed again after this. Above webhook_timeout.",
        "webhooks",
        minimum=1,
    )
    webhook_retry_base: float = setting(
        5.0,
        "Seconds before the first retry of a failed delivery; each retry waits about twice as "
        "long as the one before (with jitter), up to webhook_retry_max_interval.",
        "webhooks",
        minimum=0.01,
    )
    webhook_retry_max_interval: float = setting(
        3600.0,
        "Longest wait between two attempts of a delivery (a receiver's Retry-After included).",
        "webhooks",
        minimum=0.01,
    )
    webhook_retry_window: float = setting(
        86400.0,
        "Seconds a delivery is retried after it was made (or redelivered); then it is failed.",
        "webhooks",
        minimum=0,
    )
    webhook_disable_after: float = setting(
        5 * 86400.0,
        "Seconds an endpoint's deliveries may fail with no success before the endpoint is "
        "disabled (a receiver's 410 Gone disables it at once).",
        "webhooks",
        minimum=0,
    )
    webhook_secret_grace: float = setting(
        86400.0,
        "Seconds the previous secret of an endpoint keeps signing beside the new one after "
        "a rotation (webhook-signature then carries both).",
        "webhooks",
        minimum=0,
    )
    webhook_poll_interval: float = setting(
        1.0,
        "Seconds between looks for new events and due deliveries when idle.",
        "webhooks",
        minimum=0.01,
    )
    webhook_event_grace: float = setting(
        60.0,
        "Seconds after which a deletion's event whose deletion was never confirmed (its "
        "process died) is checked: delivered if the media is gone, dropped if it is not.",
        "webhooks",
        minimum=0,
    )
    webhook_max_endpoints: int = setting(
        100, "Most webhook endpoints that can be registered.", "webhooks", minimum=1
    )
    webhook_max_url_length: int = setting(
        2048, "Longest webhook endpoint URL, in characters.", "webhooks", minimum=16
    )
    webhook_attempts_kept: int = setting(
        20,
        "Attempts of one delivery kept in its history (the latest ones).",
        "webhooks",
        minimum=1,
        maximum=1000,
    )

    # ---- derived values

    @functools.cached_property
    def data_path(self) -> Path:
        """Absolute data folder (resolved once: every upload asks for the spool folder)."""
        return Path(self.data_dir).expanduser().resolve()

    @property
    def storage_path(self) -> Path:
        """Absolute folder of the local blob store."""
        return Path(self.storage_dir).resolve() if self.storage_dir else self.data_path / "media"

    @functools.cached_property
    def spool_path(self) -> Path:
        """Absolute folder for upload spool files."""
        return Path(self.spool_dir).resolve() if self.spool_dir else self.data_path / "spool"

    @functools.cached_property
    def tus_path(self) -> Path:
        """Absolute folder of the bytes of unfinished resumable uploads."""
        return Path(self.tus_dir).resolve() if self.tus_dir else self.data_path / "tus"

    @property
    def metrics_path(self) -> Path:
        """Folder of the multi-process Prometheus metrics: by default in RAM (/dev/shm).

        Their files are memory-mapped, and writing a page of one that the file system cannot
        allocate kills the process with SIGBUS: on the data disk, a disk filled by uploads
        would take every server down. /dev/shm does not fill up with uploads.
        """
        if self.metrics_dir:
            return Path(self.metrics_dir).resolve()
        shm = Path("/dev/shm")
        if shm.is_dir() and os.access(shm, os.W_OK):
            digest = hashlib.sha256(str(self.data_path).encode()).hexdigest()[:12]
            return shm / f"mediasvc-metrics-{digest}"
        return self.data_path / "metrics"

    @property
    def secrets_path(self) -> Path:
        """Folder of generated secrets (mode 0700)."""
        return self.data_path / "secrets"

    def size_limit(self, media_type: str) -> int:
        """The upload limit of one media type, in bytes."""
        return int(getattr(self, f"max_{media_type}_size"))

    @property
    def largest_upload(self) -> int:
        """The largest per-type limit: what a multipart body may carry at most."""
        return max(self.size_limit(t) for t in ("image", "video", "document", "audio"))

    def replace(self, **changes: Any) -> Settings:
        """A copy with some values changed (already typed)."""
        return dataclasses.replace(self, **changes)


def schema() -> tuple[dataclasses.Field[Any], ...]:
    """Every setting, in declaration order."""
    return dataclasses.fields(Settings)


def _field_type(f: dataclasses.Field[Any]) -> str:
    kind: str = f.metadata["kind"]
    if kind:
        return kind
    return str(f.type)


def parse_size(text: str) -> int:
    """Parse '10MB', '512 KiB' or '1048576' into bytes (binary units)."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"not a size: {text!r} (use bytes or a KB/MB/GB suffix)")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def coerce(f: dataclasses.Field[Any], raw: Any) -> Any:
    """Turn a raw value (a string from the environment, or a TOML value) into the setting's type."""
    kind = _field_type(f)
    try:
        value = _coerce_kind(kind, raw)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"setting {f.name}: {exc}") from None
    _check_range(f, value)
    return value


def _coerce_kind(kind: str, raw: Any) -> Any:
    if kind == "size":
        if isinstance(raw, bool):
            raise ValueError(f"not a size: {raw!r}")
        return raw if isinstance(raw, int) else parse_size(str(raw))
    if kind == "list":
        items = raw if isinstance(raw, list) else str(raw).split(",")
        return tuple(str(item).strip() for item in items if str(item).strip())
    if kind == "bool":
        return raw if isinstance(raw, bool) else _parse_bool(str(raw))
    if kind == "int":
        if isinstance(raw, (bool, float)):
            raise ValueError(f"not an integer: {raw!r}")
        return int(raw)
    if kind == "float":
        if isinstance(raw, bool):
            raise ValueError(f"not a number: {raw!r}")
        return float(raw)
    if not isinstance(raw, (str, int, float)) or isinstance(raw, bool):
        raise ValueError(f"not a string: {raw!r}")
    return str(raw)


def _check_range(f: dataclasses.Field[Any], value: Any) -> None:
    meta = f.metadata
    if meta["choices"] and value not in meta["choices"]:
        raise SettingsError(
            f"setting {f.name}: {value!r} is not one of {', '.join(meta['choices'])}"
        )
    if meta["minimum"] is not None and value < meta["minimum"]:
        raise SettingsError(f"setting {f.name}: {value} is below the minimum {meta['minimum']}")
    if meta["maximum"] is not None and value > meta["maximum"]:
        raise SettingsError(f"setting {f.name}: {value} is above the maximum {meta['maximum']}")


def load_settings(
    config_file: str | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Defaults, then the config file, then MEDIASVC_* variables, then explicit overrides."""
    by_name = {f.name: f for f in schema()}
    values: dict[str, Any] = {}
    if config_file:
        values.update(_read_config_file(config_file, by_name))
    env = os.environ if environ is None else environ
    for key, raw in env.items():
        if not key.startswith(ENV_PREFIX) or key in CLIENT_VARIABLES:
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if name not in by_name:
            raise SettingsError(f"unknown setting {key} in the environment")
        values[name] = coerce(by_name[name], raw)
    for name, raw in (overrides or {}).items():
        if raw is not None:
            values[name] = coerce(by_name[name], raw)
    settings = Settings(**values)
    _check_consistency(settings)
    return settings


def _read_config_file(path: str, by_name: Mapping[str, dataclasses.Field[Any]]) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except OSError as exc:
        raise SettingsError(f"config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path}: {exc}") from None
    values = {}
    for name, raw in document.items():
        if name not in by_name:
            raise SettingsError(f"config file {path}: unknown setting {name}")
        values[name] = coerce(by_name[name], raw)
    return values


def _check_consistency(settings: Settings) -> None:
    if settings.default_page_size > settings.max_page_size:
        raise SettingsError("setting default_page_size: larger than max_page_size")
    if settings.storage == "s3" and not settings.s3_bucket:
        raise SettingsError("setting s3_bucket: required when storage = s3")
    for name in ("s3_endpoint_url", "s3_public_base_url"):
        value = getattr(settings, name)
        if value and not re.fullmatch(r"https?://[^/?#\s]+(/[^?#\s]*)?", value):
            raise SettingsError(f"setting {name}: must be an absolute http(s) URL")
    if settings.storage == "s3" and settings.incomplete_multipart_max_age < settings.tus_upload_ttl:
        raise SettingsError(
            "setting incomplete_multipart_max_age: at least tus_upload_ttl (the sweep would "
            "abort the S3 parts of resumable uploads still in progress)"
        )
    if not re.fullmatch(r"[0-9]{2,4}x[0-9]{2,4}", settings.waveform_size):
        raise SettingsError("setting waveform_size: use WIDTHxHEIGHT, e.g. 800x160")
    for name in ("image_operations", "video_operations"):
        unknown = set(getattr(settings, name)) - {"thumbnail", "optimize"}
        if unknown:
            raise SettingsError(
                f"setting {name}: only thumbnail and optimize, not {sorted(unknown)}"
            )
    if settings.public_url and not re.fullmatch(
        r"^https?://[^/?#\s]+(/[^?#\s]*)?$", settings.public_url
    ):
        raise SettingsError("setting public_url: must be an absolute http(s) URL")
    symmetric = [a for a in settings.jwt_algorithms if a.startswith("HS")]
    if symmetric and len(symmetric) != len(settings.jwt_algorithms):
        raise SettingsError("setting jwt_algorithms: do not mix HS* with public-key algorithms")
    if not symmetric and not settings.jwt_public_key:
        raise SettingsError("setting jwt_public_key: required for public-key algorithms")
    if settings.jwt_secret and len(settings.jwt_secret) < 32:
        raise SettingsError("setting jwt_secret: use at least 32 characters")
    if "none" in (a.lower() for a in settings.jwt_algorithms):
        raise SettingsError("setting jwt_algorithms: 'none' is never accepted")
    if settings.webhook_lease <= settings.webhook_timeout:
        raise SettingsError("setting webhook_lease: must be above webhook_timeout")
    _check_cors_origins(settings.cors_origins)


_ORIGIN = re.compile(r"https?://([a-z0-9.\-]+|\[[0-9a-f:.]+\])(:[0-9]{1,5})?")


def _check_cors_origins(origins: tuple[str, ...]) -> None:
    """Each origin as a browser writes it in `Origin` (else it could never match), or `*`."""
    if "*" in origins and len(origins) > 1:
        raise SettingsError("setting cors_origins: * stands alone (it allows every origin)")
    for origin in origins:
        if origin != "*" and not _ORIGIN.fullmatch(origin):
            raise SettingsError(
                f"setting cors_origins: {origin!r} is not an origin such as "
                "https://app.example.com (scheme, lower-case host, optional port; no path)"
            )


def render_value(f: dataclasses.Field[Any], value: Any) -> str:
    """A value as TOML, secrets masked when set."""
    if f.metadata["secret"] and value:
        return '"********"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(f'"{item}"' for item in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(settings: Settings | None = None, *, commented: bool = False) -> str:
    """Every setting with its help, grouped: `mediasvc config` and the example file."""
    current = settings or Settings()
    lines: list[str] = []
    group = None
    for f in schema():
        if f.metadata["group"] != group:
            group = f.metadata["group"]
            lines += ["", f"# ---- {group}"]
        lines.append(f"# {f.metadata['help']} (env {ENV_PREFIX}{f.name.upper()})")
        entry = f"{f.name} = {render_value(f, getattr(current, f.name))}"
        lines.append(("# " if commented else "") + entry)
    return "\n".join(lines).lstrip() + "\n"
