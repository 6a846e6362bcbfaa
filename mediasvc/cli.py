"""The `mediasvc` command: serve, token, console-url, config, upload, and the operations
commands."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import sys
from typing import Any

from mediasvc.auth import TokenAuthority, valid_grant
from mediasvc.embedded_db import EmbeddedDatabaseError, run_database
from mediasvc.errors import MediaError
from mediasvc.secretfiles import resolve_secrets
from mediasvc.settings import Settings, SettingsError, load_settings, render
from mediasvc.uploader.options import add_parser as add_upload_parser


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="TOML config file (see config/mediasvc.conf.example)")
    common.add_argument("--data-dir", help="folder for all local state (default ./var)")
    parser = argparse.ArgumentParser(prog="mediasvc", description="Media management service.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", parents=[common], help="run the HTTP API")
    serve.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default 8000)")
    _add_claims(commands.add_parser("token", parents=[common], help="print a bearer token"))
    console_url = commands.add_parser(
        "console-url",
        parents=[common],
        help="print a URL that signs a browser in to the web console (the token in its fragment)",
    )
    _add_claims(console_url)
    console_url.add_argument(
        "--server", help="the service's URL (default: public_url, else http://host:port)"
    )
    commands.add_parser("config", parents=[common], help="print the effective settings")
    add_upload_parser(commands, [common])
    commands.add_parser(
        "database",
        parents=[common],
        help="run the embedded database in the foreground (its own supervisord program)",
    )
    commands.add_parser(
        "gc", parents=[common], help="sweep expired presigned uploads and stale multipart uploads"
    )
    commands.add_parser(
        "worker", parents=[common], help="process jobs without serving HTTP (a processing node)"
    )
    commands.add_parser(
        "migrate",
        parents=[common],
        help="bring records of earlier versions up to date (servers also do it at start-up)",
    )
    return parser


def _add_claims(command: argparse.ArgumentParser) -> None:
    command.add_argument("--sub", required=True, help="the caller's id (`sub` claim)")
    command.add_argument("--role", action="append", default=[], help="a role, e.g. admin")
    command.add_argument(
        "--entity", action="append", default=[], help="a grant TYPE:ID or TYPE:* (repeatable)"
    )
    command.add_argument("--ttl", type=int, help="lifetime in seconds")


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {"data_dir": args.data_dir}
    overrides["host"] = getattr(args, "host", None)
    overrides["port"] = getattr(args, "port", None)
    return load_settings(args.config, overrides=overrides)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args)
    except SettingsError as exc:
        print(f"mediasvc: {exc}", file=sys.stderr)
        return 2
    if args.command == "config":
        sys.stdout.write(render(settings))
        return 0
    if args.command == "token":
        return _token(settings, args)
    if args.command == "console-url":
        return _console_url(settings, args)
    if args.command == "upload":
        from mediasvc.uploader.command import run as upload  # rich, only when uploading

        return upload(settings, args)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    if args.command == "database":
        return run_database(settings)
    _share_metrics(settings)
    from mediasvc.app import (  # after the metrics folder is set
        collect_garbage,
        migrate_database,
        run_worker,
        serve,
    )

    try:
        if args.command == "gc":
            report = asyncio.run(collect_garbage(settings))
            print(json.dumps(report))
            return 1 if "errors" in report else 0  # a step could not run: cron should say so
        if args.command == "migrate":
            print(json.dumps(asyncio.run(migrate_database(settings))))
            return 0
        run = run_worker if args.command == "worker" else serve
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run(settings))
    except (EmbeddedDatabaseError, MediaError) as exc:  # one line that says what to do
        print(f"mediasvc: {exc}", file=sys.stderr)
        return 1
    return 0


def _share_metrics(settings: Settings) -> None:
    # prometheus_client picks its storage when first imported: point it at the shared
    # folder before that, so every process of this machine reports into one scrape.
    settings.metrics_path.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(settings.metrics_path))


def _token(settings: Settings, args: argparse.Namespace) -> int:
    token = _mint(settings, args)
    if token is None:
        return 2
    print(token)
    return 0


def _console_url(settings: Settings, args: argparse.Namespace) -> int:
    """The console's address with a token in its fragment: a browser never sends a
    fragment, so the token reaches no log; the page moves it to session storage."""
    server = (args.server or settings.public_url or _listen_url(settings)).rstrip("/")
    if not re.fullmatch(r"https?://[^/?#\s]+(/[^?#\s]*)?", server):
        print(f"mediasvc: --server {server!r} is not an http(s) URL", file=sys.stderr)
        return 2
    token = _mint(settings, args)
    if token is None:
        return 2
    print(f"{server}/console/#token={token}")
    return 0


def _listen_url(settings: Settings) -> str:
    host = settings.host
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "[::1]"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def _mint(settings: Settings, args: argparse.Namespace) -> str | None:
    """A token with the command's claims, or None (and a message) if they are not valid."""
    bad = [grant for grant in args.entity if not valid_grant(grant)]
    if bad:
        print(f"mediasvc: --entity {bad[0]!r} is not TYPE:ID or TYPE:*", file=sys.stderr)
        return None
    if args.ttl is not None and args.ttl <= 0:
        print("mediasvc: --ttl must be positive", file=sys.stderr)
        return None
    jwt_secret, _ = resolve_secrets(
        settings.jwt_secret, settings.url_signing_secret, settings.secrets_path
    )
    try:
        return TokenAuthority(settings, jwt_secret).mint(
            args.sub, roles=args.role, entities=args.entity, ttl=args.ttl
        )
    except ValueError as exc:
        print(f"mediasvc: {exc}", file=sys.stderr)
        return None
