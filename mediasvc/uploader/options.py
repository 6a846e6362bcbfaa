"""The options of `mediasvc upload`, apart from the command itself so that the other
commands do not import what uploading needs (rich) just to parse their command line."""

from __future__ import annotations

import argparse

TOKEN_VARIABLE = "MEDIASVC_TOKEN"
CHECKSUMS = ("sha1", "sha256", "md5", "none")


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    """The `upload` subcommand and its options."""
    upload = commands.add_parser(
        "upload",
        parents=parents,
        help="upload files and folders (resumable, through tus)",
        description="Upload files and folder trees to one entity through tus. An interrupted "
        "run continues where it stopped when it is run again.",
    )
    upload.add_argument("paths", nargs="+", metavar="PATH", help="a file or a folder (recursive)")
    upload.add_argument("--entity", required=True, metavar="TYPE:ID", help="where the media go")
    upload.add_argument(
        "--server", metavar="URL", help="the service's base URL (default: the public_url setting)"
    )
    upload.add_argument("--token", help=f"bearer token (default: ${TOKEN_VARIABLE})")
    upload.add_argument(
        "--include", action="append", default=[], metavar="GLOB",
        help="in folders, only files whose path or name matches (repeatable)",
    )  # fmt: skip
    upload.add_argument(
        "--concurrency", type=int, default=4, metavar="N", help="files sent at once (4)"
    )
    upload.add_argument(
        "--chunk-size", default="32MB", metavar="SIZE", help="bytes a request (32MB)"
    )
    upload.add_argument(
        "--checksum", choices=CHECKSUMS, default="sha1",
        help="Upload-Checksum of every chunk, checked by the server (sha1)",
    )  # fmt: skip
    upload.add_argument(
        "--retries", type=int, default=8, metavar="N", help="tries after a failure (8)"
    )
    upload.add_argument(
        "--timeout", type=float, default=60.0, metavar="SECONDS",
        help="network silence before a connection counts as lost (60)",
    )  # fmt: skip
    upload.add_argument(
        "--state", metavar="FILE",
        help="where uploads begun and finished are remembered (default: "
        "$XDG_STATE_HOME/mediasvc/uploads.db, else ~/.local/state/mediasvc/uploads.db)",
    )  # fmt: skip
    upload.add_argument(
        "--again", action="store_true",
        help="send files again that an earlier run stored (by default they are left alone)",
    )  # fmt: skip
    upload.add_argument("--wait", action="store_true", help="wait until every media is processed")
    upload.add_argument(
        "--wait-timeout", type=float, default=600.0, metavar="SECONDS",
        help="how long --wait waits in all (600)",
    )  # fmt: skip
    upload.add_argument(
        "--json", action="store_true", help="a JSON object a file on stdout, no progress bars"
    )
    upload.add_argument("--title", help="the media's title (one file only)")
    upload.add_argument("--description", help="the media's description (one file only)")
    upload.add_argument("--alt-text", help="the media's alt text (one file only)")
