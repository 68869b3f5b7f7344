"""Where an imported model's bytes come from (CREATE MODEL FROM 'location' | (query)).

Three places, each bounded by the operator's size limit (`--import-max-bytes`), so
a huge file costs at most that much memory:

- a path, only inside the operator's import directory (`--import-dir`; none by
  default, so a client cannot make the proxy read its files): the path is resolved,
  symlinks and `..` included, before it is compared with the directory, and only a
  regular file is read;
- an object-store URL (`s3://bucket/key`) that starts with one of the operator's
  prefixes (`--import-urls`; none by default, since the proxy reads with its own
  identity: the standard AWS credential chain of its process), through fsspec/s3fs;
- the one bytea value a query returns, read on the client's own session, so the
  client's privileges decide what it may read.

Reading files and URLs runs in threads; nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import os
import stat
from pathlib import Path

from .. import errors
from ..errors import PgError

#: the object stores FROM 'url' reads (through fsspec)
URL_SCHEMES = ("s3",)
#: how long reading from an object store may take
URL_TIMEOUT = 300.0
PROGRAM_LIMIT_EXCEEDED = "54000"
UNDEFINED_FILE = "58P01"
_LIMIT_HINT = "The proxy's operator sets the limit with --import-max-bytes."


def too_big(size: int | None, limit: int) -> PgError:
    what = f"{size} bytes" if size is not None else f"more than {limit} bytes"
    return PgError(PROGRAM_LIMIT_EXCEEDED, f"the model file has {what}; at most {limit} are imported",
                   hint=_LIMIT_HINT)


async def read_path(text: str, import_dir: Path | None, limit: int, position: int | None) -> bytes:
    if import_dir is None:
        raise PgError(errors.FEATURE_NOT_SUPPORTED,
                      f"CREATE MODEL FROM '{text}': importing model files from paths is not enabled on this proxy",
                      position=position,
                      hint="The proxy's operator allows one directory with --import-dir. Without it, import "
                           "FROM 's3://bucket/key' or FROM (SELECT model_bytes FROM ...).")
    try:
        return await asyncio.to_thread(_read_inside, text, import_dir, limit)
    except PgError as err:
        err.position = position
        raise


def _read_inside(text: str, import_dir: Path, limit: int) -> bytes:
    root = os.path.realpath(import_dir)
    # (an absolute path replaces root in the join: it too must resolve inside root)
    candidate = os.path.realpath(os.path.join(root, text))
    if os.path.commonpath([root, candidate]) != root:
        raise _outside(text)
    try:
        # O_NOFOLLOW: the last component cannot be swapped for a link after the check;
        # O_NONBLOCK: opening a FIFO does not wait for a writer
        fd = os.open(candidate, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise _open_error(exc, text) from None
    try:
        # a directory swapped for a link between the check and the open: what was
        # opened is checked too, where the system says (Linux' /proc)
        opened = _opened_path(fd)
        if opened is not None and os.path.commonpath([root, opened]) != root:
            raise _outside(text)
        info = os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        what = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise PgError(errors.INVALID_PARAMETER_VALUE, f"model file \"{text}\" is {what}")
    with os.fdopen(fd, "rb") as handle:
        if info.st_size > limit:
            raise too_big(info.st_size, limit)
        data = handle.read(limit + 1)
    if len(data) > limit:  # grew meanwhile
        raise too_big(None, limit)
    return data


def _outside(text: str) -> PgError:
    return PgError(errors.INSUFFICIENT_PRIVILEGE, f"model file \"{text}\" is outside the proxy's import directory",
                   hint="Paths are read only inside the directory the operator allows (--import-dir), "
                        "after resolving symbolic links and \"..\".")


def _opened_path(fd: int) -> str | None:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def _open_error(exc: OSError, text: str) -> PgError:
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return PgError(UNDEFINED_FILE, f"could not open model file \"{text}\": No such file or directory")
    if exc.errno == errno.ELOOP:
        return PgError(errors.INSUFFICIENT_PRIVILEGE, f"model file \"{text}\" is a symbolic link out of place")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return PgError(errors.INSUFFICIENT_PRIVILEGE,
                       f"could not open model file \"{text}\": the proxy may not read it")
    if exc.errno == errno.EISDIR:
        return PgError(errors.INVALID_PARAMETER_VALUE, f"model file \"{text}\" is a directory")
    return errors.file_error(exc, "open file", text)


async def read_url(url: str, allowed: tuple[str, ...], limit: int, position: int | None) -> bytes:
    scheme = url.split("://", 1)[0].lower()
    if scheme not in URL_SCHEMES:
        raise PgError(errors.FEATURE_NOT_SUPPORTED, f"CREATE MODEL FROM '{url}': {scheme}:// URLs are not read",
                      position=position,
                      hint="Import FROM 's3://bucket/key', a path under the proxy's --import-dir, or "
                           "FROM (SELECT model_bytes FROM ...).")
    if not allowed:
        raise PgError(errors.FEATURE_NOT_SUPPORTED,
                      f"CREATE MODEL FROM '{url}': importing model files from URLs is not enabled on this proxy",
                      position=position,
                      hint="The proxy's operator allows URL prefixes with --import-urls. Without it, import "
                           "FROM (SELECT model_bytes FROM ...).")
    # S3 keys are taken literally, but a '..' segment is refused all the same: nothing
    # may look as if it stepped out of an allowed prefix
    segments = url.split("://", 1)[1].split("/")
    if ".." in segments or "." in segments or not any(url.startswith(prefix) for prefix in allowed):
        raise PgError(errors.INSUFFICIENT_PRIVILEGE,
                      f"CREATE MODEL FROM '{url}': the URL is outside the prefixes this proxy imports from",
                      position=position, hint="The proxy's operator allows URL prefixes with --import-urls.")
    try:
        async with asyncio.timeout(URL_TIMEOUT):
            return await asyncio.to_thread(_read_url, url, limit)
    except TimeoutError:
        raise PgError(errors.IO_ERROR, f"reading \"{url}\" took longer than {URL_TIMEOUT:g} s",
                      position=position) from None
    except PgError as err:
        err.position = position
        raise


def _read_url(url: str, limit: int) -> bytes:
    try:
        import fsspec

        fs, path = fsspec.core.url_to_fs(url)
        with fs.open(path, "rb") as handle:
            size = getattr(handle, "size", None)
            if isinstance(size, int) and size > limit:
                raise too_big(size, limit)
            data = handle.read(limit + 1)
    except PgError:
        raise
    except ImportError as exc:  # s3fs is a dependency; a trimmed install may lack it
        raise PgError(errors.FEATURE_NOT_SUPPORTED, f"cannot read {url}: {exc}") from None
    except FileNotFoundError:
        raise PgError(UNDEFINED_FILE, f"could not open model file \"{url}\": no such object") from None
    except PermissionError as exc:
        raise PgError(errors.INSUFFICIENT_PRIVILEGE, f"could not read \"{url}\": access denied ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - credentials, network, bucket: the statement's error
        raise PgError(errors.IO_ERROR, f"could not read \"{url}\": {type(exc).__name__}: {exc}") from None
    if len(data) > limit:
        raise too_big(None, limit)
    return data


def bytea_query(source_sql: str, limit: int) -> str:
    """The query that reads the model from `source_sql`'s one bytea column: its size,
    and (only when within the limit) its bytes as base64; at most two rows, so a
    query returning more is told without reading them all."""
    return (f"SELECT pg_catalog.octet_length(mlproxy_source.model_bytes), CASE WHEN "
            f"pg_catalog.octet_length(mlproxy_source.model_bytes) <= {int(limit)} THEN "
            f"pg_catalog.encode(mlproxy_source.model_bytes, 'base64') END FROM ({source_sql}\n) "
            f"AS mlproxy_source(model_bytes) LIMIT 2")


def bytea_rows(rows: list[list[str | None]], limit: int, position: int | None) -> bytes:
    """The model bytes from bytea_query's rows: exactly one row with a value."""
    hint = ("FROM ( query ) imports the model file the query returns as its one bytea value; "
            "a training statement needs TARGET.")
    if len(rows) != 1:
        what = "no rows" if not rows else "more than one row"
        raise PgError(errors.INVALID_PARAMETER_VALUE, f"the model query returned {what}; it must return one",
                      position=position, hint=hint)
    size, encoded = rows[0]
    if size is None:
        raise PgError(errors.INVALID_PARAMETER_VALUE, "the model query returned NULL", position=position, hint=hint)
    if encoded is None:
        raise too_big(int(size), limit)
    return base64.b64decode(encoded)
