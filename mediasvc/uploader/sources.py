"""Which files a command line names. Folders are walked (hidden files and folders left out,
`--include` globs applied); files the service would refuse for their extension, and empty
ones, are reported as skipped instead of being sent only to be refused."""

from __future__ import annotations

import os
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

from mediasvc.media_types import extension_of, kind_for_extension


@dataclass(frozen=True)
class Source:
    """A file to upload: where it is, how it is shown, and what identifies its version."""

    path: Path  # absolute
    shown: str  # as the command line named it (a folder's files under the folder's name)
    size: int
    mtime_ns: int

    @property
    def name(self) -> str:
        """The filename the media gets."""
        return self.path.name


@dataclass(frozen=True)
class Skipped:
    """A file that is not uploaded, and why (`failed`: it was named, so that is an error)."""

    shown: str
    reason: str
    failed: bool = False
    size: int = 0


@dataclass
class Collection:
    """What the command line came to."""

    sources: list[Source]
    skipped: list[Skipped]


def collect(paths: list[str], includes: list[str]) -> Collection:
    """Files named and found in folders, each once, in command-line then sorted order."""
    found = Collection([], [])
    seen: set[Path] = set()
    for given in paths:
        path = Path(given)
        if path.is_dir():
            for file, shown in _walk(path, given, includes):
                _add(found, seen, file, shown, named=False)
        elif path.exists():
            _add(found, seen, path, given, named=True)
        else:
            found.skipped.append(Skipped(given, "no such file or folder", failed=True))
    return found


def _walk(folder: Path, given: str, includes: list[str]) -> list[tuple[Path, str]]:
    """Visible files below `folder` (symlinked folders are not followed) that match."""
    files = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            relative = PurePosixPath(Path(root, name).relative_to(folder).as_posix())
            if includes and not matches(relative, includes):
                continue
            files.append((Path(root, name), os.path.join(given, *relative.parts)))
    return files


def matches(relative: PurePosixPath, includes: list[str]) -> bool:
    """Whether a path (relative to the folder given) matches a glob, by its whole relative
    path (`*` crosses folders, so `*.jpg` is every JPEG) or by its name."""
    text = str(relative)
    return any(fnmatchcase(text, glob) or fnmatchcase(relative.name, glob) for glob in includes)


def _add(found: Collection, seen: set[Path], path: Path, shown: str, *, named: bool) -> None:
    absolute = path.resolve()
    if absolute in seen:
        return
    seen.add(absolute)
    problem = refusal(absolute)
    try:
        stat = absolute.stat()
    except OSError as exc:
        found.skipped.append(Skipped(shown, exc.strerror or str(exc), failed=True))
        return
    if problem is None and stat.st_size == 0:
        problem = "the file is empty"
    if problem is None and not absolute.is_file():
        problem = "not a regular file"
    if problem is not None:
        found.skipped.append(Skipped(shown, problem, failed=named, size=stat.st_size))
        return
    found.sources.append(Source(absolute, shown, stat.st_size, stat.st_mtime_ns))


def refusal(path: Path) -> str | None:
    """Why the service would refuse the file for its name (an extension it does not take)."""
    extension = extension_of(path.name)
    if not extension:
        return "the name has no extension (the service needs one)"
    if kind_for_extension(extension) is None:
        return f"the service does not accept .{extension} files"
    return None
