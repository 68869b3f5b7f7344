"""The on-disk cache of compiled libraries, keyed by artifact hash.

Layout: ``<cache_dir>/<artifact sha256>/<build tag>/{model.so, build.json}``. The build
tag hashes everything besides the artifact that shapes the library (driver source and
ABI, TL2cgen/Treelite versions, code generation recipe, machine), so upgrading any of
them makes a fresh entry instead of loading a stale one.

Entries appear atomically: a build writes into a private temporary directory and
renames it into place; if another process got there first, its entry wins and the
loser's copy is discarded. A per-entry lock file additionally lets a second builder
wait for the first instead of compiling the same model twice. A cache hit is
re-verified (the library's sha256 is recorded in build.json) before it is loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tl2cgen
import treelite

from .driver_source import DRIVER_C
from . import native

try:  # POSIX advisory locks; without them concurrent builds still end correctly
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LIBRARY_NAME = "model" + (".dll" if sys.platform == "win32" else ".dylib" if sys.platform == "darwin" else ".so")
BUILD_INFO = "build.json"
#: bump when the build recipe changes in a way the constants in native.py do not show
RECIPE_VERSION = 2
#: temporary build directories older than this are debris from killed builds
STALE_SECONDS = 6 * 3600


def default_cache_dir() -> Path:
    """$MLPROXY_CACHE_DIR, else the user cache dir (platformdirs) / mlproxy / models."""
    env = os.environ.get("MLPROXY_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("mlproxy")) / "models"


def build_tag() -> str:
    ident = {
        "abi": native.ABI_VERSION,
        "recipe": RECIPE_VERSION,
        "layout": [native.BLOCK_ROWS, native.MIN_ROWS_PER_THREAD, native.NODES_PER_UNIT, native.MAX_UNITS,
                   native.COMPILE_OPTIONS],
        "node_arrays": [native.LANES, native.NODE_BLOCK_ROWS, native.NODE_ARRAYS_COMPILE_OPTIONS,
                        native.NODE_ARRAYS_MAX_WASTE,
                        hashlib.sha256(native.walk_asm(native.LANES).encode()).hexdigest()],
        # which evaluator a model gets, and how QuickScorer is compiled
        "quick_scorer": [native.QUICK_SCORER_MAX_TESTS_PER_STEP, native.QUICK_SCORER_COMPILE_OPTIONS],
        "driver": hashlib.sha256(DRIVER_C.encode()).hexdigest(),
        "tl2cgen": tl2cgen.__version__,
        "treelite": treelite.__version__,
        "machine": platform.machine(),
        "platform": sys.platform,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def entry_dir(cache_dir: Path, sha256: str, tag: str | None = None) -> Path:
    return Path(cache_dir) / sha256 / (tag or build_tag())


@dataclass(frozen=True)
class CachedBuild:
    """A verified cache entry."""

    library: Path
    info: dict[str, Any]


def lookup(cache_dir: Path, sha256: str) -> CachedBuild | None:
    """The entry for this artifact if present and intact; a damaged entry is moved
    aside (so the next build can replace it) and reported as a miss."""
    entry = entry_dir(cache_dir, sha256)
    info_path = entry / BUILD_INFO
    if not info_path.exists():
        return None
    try:
        info = json.loads(info_path.read_text())
        library = entry / LIBRARY_NAME
        ok = info.get("artifact_sha256") == sha256 and file_sha256(library) == info.get("library_sha256")
    except (OSError, ValueError):
        ok = False
    if not ok:
        discard(entry)
        return None
    return CachedBuild(library=library, info=info)


def discard(entry: Path) -> None:
    """Move an entry out of the way atomically, then delete it."""
    trash = entry.with_name(f".trash-{entry.name}-{uuid.uuid4().hex[:8]}")
    with contextlib.suppress(OSError):
        os.rename(entry, trash)
        shutil.rmtree(trash, ignore_errors=True)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def build_lock(cache_dir: Path, sha256: str) -> Iterator[None]:
    """Exclusive lock on one artifact's entry for the duration of a build."""
    parent = Path(cache_dir) / sha256
    parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover
        yield
        return
    with open(parent / f".{build_tag()}.lock", "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def temp_dir(cache_dir: Path, sha256: str) -> Path:
    """A fresh private directory next to the entry (same filesystem, so rename is atomic)."""
    parent = Path(cache_dir) / sha256
    parent.mkdir(parents=True, exist_ok=True)
    _sweep(parent)
    path = parent / f".tmp-{build_tag()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    return path


def publish(tmp: Path, cache_dir: Path, sha256: str) -> Path:
    """Atomically rename a finished build into place; if an entry already exists
    (another process won the race), keep that one and drop ours."""
    entry = entry_dir(cache_dir, sha256)
    try:
        os.rename(tmp, entry)
    except OSError:
        if not (entry / BUILD_INFO).exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return entry


def _sweep(parent: Path) -> None:
    """Remove leftovers of builds that were killed part-way."""
    now = time.time()
    for path in parent.glob(".tmp-*"):
        with contextlib.suppress(OSError):
            if now - path.stat().st_mtime > STALE_SECONDS:
                shutil.rmtree(path, ignore_errors=True)
