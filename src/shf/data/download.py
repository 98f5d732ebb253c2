"""Download a file into the data cache, from the first of several mirrors that works.

The cache directory is, in this order: the ``explicit`` argument of :func:`cache_dir`, the
environment variable ``SHF_DATA_DIR``, or ``~/.cache/shf``. :func:`fetch` never leaves a
partial or a wrong file there: it streams each download into a temporary file in the same
directory, checks its md5, and only then moves it into place with :func:`os.replace`
(atomic on one file system); on any failure the temporary file is removed. When every
mirror fails, the :class:`~shf.errors.DataError` names each URL with its error and the file
name and directory where the file can be put by hand.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from tqdm import tqdm

from shf.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

ENV_VAR: Final[str] = "SHF_DATA_DIR"
"""Environment variable that overrides the default cache directory."""
DEFAULT_CACHE: Final[Path] = Path("~/.cache/shf")
"""Default cache directory (``~`` expanded when used)."""
TIMEOUT_S: Final[float] = 30.0
"""Default network timeout of one connection attempt or read, in seconds."""

_CHUNK: Final[int] = 1 << 16
_MD5_RE: Final[re.Pattern[str]] = re.compile(r"[0-9a-fA-F]{32}")
_USER_AGENT: Final[str] = "shf-lsmr data loader (python urllib)"


def _resolve_cache_dir(explicit: str | os.PathLike[str] | None) -> Path:
    if explicit is not None and str(explicit) != "":
        return Path(explicit).expanduser()
    env = os.environ.get(ENV_VAR, "")
    if env:
        return Path(env).expanduser()
    return DEFAULT_CACHE.expanduser()


def cache_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The data cache directory: ``explicit``, else ``$SHF_DATA_DIR``, else ``~/.cache/shf``.

    The directory is not created here (:func:`fetch` creates it when it downloads).
    """
    return _resolve_cache_dir(explicit)


def file_md5(path: str | os.PathLike[str]) -> str:
    """md5 hex digest of a file's bytes, read in chunks."""
    h = hashlib.md5()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _check_args(urls: Sequence[str] | str, filename: str, md5: str | None) -> tuple[list[str], str | None]:
    url_list = [urls] if isinstance(urls, str) else list(urls)
    if not url_list or not all(isinstance(u, str) and u for u in url_list):
        raise ConfigError(f"fetch needs at least one URL (non-empty strings), got {urls!r}")
    if not filename or filename in (".", "..") or "/" in filename or os.sep in filename:
        raise ConfigError(f"fetch needs a plain file name without directories, got {filename!r}")
    if md5 is not None and not _MD5_RE.fullmatch(md5):
        raise ConfigError(f"md5 must be 32 hexadecimal digits, got {md5!r}")
    return url_list, None if md5 is None else md5.lower()


def _download_one(
    url: str, directory: Path, filename: str, md5: str | None, *, progress: bool, timeout: float
) -> Path:
    """Download ``url`` to a temporary file in ``directory``; verify; move to ``filename``.

    Raises whatever urllib raises, or :class:`DataError` for an md5 mismatch; the
    temporary file is removed in every case but success.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=directory)
    tmp = Path(tmp_name)
    try:
        h = hashlib.md5()
        request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length") if response.headers is not None else None
            total = int(length) if length is not None and str(length).isdigit() else None
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=filename,
                file=sys.stderr,
                disable=not progress,
                leave=False,
            ) as bar:
                while True:
                    block = response.read(_CHUNK)
                    if not block:
                        break
                    out.write(block)
                    h.update(block)
                    bar.update(len(block))
        got = h.hexdigest()
        if md5 is not None and got != md5:
            raise DataError(f"md5 of the downloaded file is {got}, expected {md5}")
        target = directory / filename
        os.replace(tmp, target)
        return target
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def fetch(
    url_list: Sequence[str] | str,
    filename: str,
    md5: str | None,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    *,
    timeout: float = TIMEOUT_S,
) -> Path:
    """Return ``cache_dir / filename``, downloading it from the first mirror that works.

    Args:
        url_list: full URLs of the file (mirrors), tried in order; one string is one URL.
            Any scheme :mod:`urllib.request` opens works, including ``file://``.
        filename: the file's name in the cache directory (no directories).
        md5: md5 hex digest of the file's bytes; ``None`` skips the check (not recommended).
        cache_dir: directory of the file; ``None`` means :func:`cache_dir` (``$SHF_DATA_DIR``
            or ``~/.cache/shf``). Created when missing.
        progress: show a tqdm progress bar on stderr while downloading.
        timeout: seconds before a silent connection or read is abandoned.

    Returns:
        The path of the verified file.

    A file already in the cache with the right md5 is returned without any network access.
    One with a wrong md5 is removed (a warning is logged) and downloaded again.

    Raises:
        ConfigError: empty URL list, a file name with directories, or a malformed md5.
        DataError: the directory cannot be created, or every mirror failed (the message
            lists each URL with its error and says where to put the file by hand).
    """
    urls, want = _check_args(url_list, filename, md5)
    directory = _resolve_cache_dir(cache_dir)
    target = directory / filename
    if target.is_file():
        if want is None:
            return target
        got = file_md5(target)
        if got == want:
            logger.debug("using cached %s", target)
            return target
        # never delete a file shf may not have written (a --data-dir of the user's): move it aside
        aside = target.with_name(f"{target.name}.md5-{got}")
        logger.warning(
            "cached %s has md5 %s, expected %s: moved to %s; downloading again", target, got, want, aside.name
        )
        target.replace(aside)
    elif target.exists():
        raise DataError(f"{target} exists but is not a regular file; remove it or use another data directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot create the data directory {directory} ({exc}); set {ENV_VAR} or pass another directory"
        ) from exc
    errors: list[str] = []
    for url in urls:
        logger.info("downloading %s to %s", url, target)
        try:
            return _download_one(url, directory, filename, want, progress=progress, timeout=timeout)
        # URLError, HTTPError and timeouts are OSErrors; an md5 mismatch is a DataError (a ValueError)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            # A URLError wraps the real cause in .reason; an HTTPError's str() has the status code.
            reason: object = exc
            if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
                reason = exc.reason
            errors.append(f"  {url}: {type(exc).__name__}: {reason}")
            logger.warning("download of %s failed: %s", url, reason)
    tried = "\n".join(errors)
    check = f" (md5 {want})" if want is not None else ""
    raise DataError(
        f"could not download {filename}; every mirror failed:\n{tried}\n"
        f"Download {filename}{check} by hand (from one of the URLs above) and put it in the directory "
        f"{directory} (as {target})."
    )
