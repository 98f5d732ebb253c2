"""Reader and writer for the IDX format of MNIST and Fashion-MNIST, gzip-compressed or plain.

The IDX format (LeCun et al., http://yann.lecun.com/exdb/mnist/) is a big-endian header
followed by the raw array:

* bytes 0-1: zero;
* byte 2: the element type code, one of :data:`IDX_DTYPES` (``0x08`` unsigned byte for the
  images and labels of MNIST);
* byte 3: the number of dimensions ``d``;
* ``d`` big-endian 32-bit unsigned sizes (MNIST images: ``n, 28, 28``; labels: ``n``);
* the ``prod(sizes)`` elements in C (row-major) order, big-endian.

Files are recognised as gzip by their content (the ``1f 8b`` magic bytes), not by their
name, so ``x.gz`` files that were already decompressed still load. :func:`read_idx` checks
the whole file against its header and raises :class:`~shf.errors.DataError` with the path
and the exact problem (bad magic number, unknown type code, truncated data or header,
trailing bytes, a damaged gzip stream, a content md5 that differs from the expected one).
"""

from __future__ import annotations

import gzip as _gzip
import hashlib
import os
import struct
import zlib
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from shf.errors import DataError, DataFileNotFoundError

IDX_DTYPES: Final[dict[int, np.dtype[np.generic]]] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
"""IDX element type codes and their (big-endian) numpy types."""

_GZIP_MAGIC: Final[bytes] = b"\x1f\x8b"
_MAX_DIMS: Final[int] = 16


def _read_bytes(path: Path) -> bytes:
    """The file's content, decompressed when it is a gzip file."""
    try:
        with path.open("rb") as f:
            raw = f.read()
    except IsADirectoryError as exc:
        raise DataError(f"{path}: is a directory, not an IDX file") from exc
    if raw[:2] != _GZIP_MAGIC:
        if path.suffix == ".gz" and (len(raw) < 4 or raw[:2] != b"\x00\x00"):
            raise DataError(
                f"{path}: not a gzip file (it does not start with the gzip magic bytes 1f 8b) "
                "and not a plain IDX file either; the file is damaged or not what its name says"
            )
        return raw
    try:
        return _gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"{path}: damaged or truncated gzip data ({exc}); delete the file and download it again"
        ) from exc


def idx_content_md5(path: str | os.PathLike[str]) -> str:
    """md5 hex digest of the file's decompressed content (of the file itself when not gzip)."""
    return hashlib.md5(_read_bytes(Path(path))).hexdigest()


def read_idx(path: str | os.PathLike[str], *, md5: str | None = None) -> npt.NDArray[Any]:
    """Read an IDX file (gzip or plain) into a native-endian numpy array.

    Args:
        path: the file.
        md5: when given, the md5 hex digest the *decompressed* content must have
            (the checksums of the official files are in :mod:`shf.data.mnist`).

    Returns:
        An array with the header's shape and element type (``uint8`` for MNIST), in
        native byte order.

    Raises:
        DataFileNotFoundError: the file does not exist (a ``FileNotFoundError``).
        DataError: the content is not a valid IDX array (see the module docstring) or its md5
            differs from ``md5``.
    """
    p = Path(path)
    if not p.exists():
        raise DataFileNotFoundError(f"IDX file not found: {p}")
    data = _read_bytes(p)
    if md5 is not None:
        got = hashlib.md5(data).hexdigest()
        if got != md5.lower():
            raise DataError(
                f"{p}: md5 of the decompressed content is {got}, expected {md5.lower()}: the file is "
                "damaged or is not the expected data set"
            )
    if len(data) < 4:
        raise DataError(f"{p}: only {len(data)} bytes, too short for an IDX header (4 bytes at least)")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0:
        raise DataError(
            f"{p}: bad magic number 0x{data[:4].hex()}: an IDX file starts with two zero bytes "
            "(MNIST images: 0x00000803, labels: 0x00000801)"
        )
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02x}" for c in IDX_DTYPES)
        raise DataError(f"{p}: unknown IDX element type code 0x{code:02x} (known: {known})")
    if ndim == 0 or ndim > _MAX_DIMS:
        raise DataError(f"{p}: IDX header gives {ndim} dimensions; expected 1 to {_MAX_DIMS}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{p}: truncated IDX header ({len(data)} bytes, the header needs {header})")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(data) - header
    if found < expected:
        raise DataError(
            f"{p}: truncated: the header announces shape {shape} of {dtype.name} "
            f"({expected} bytes of data) but the file holds {found} bytes after the header"
        )
    if found > expected:
        raise DataError(
            f"{p}: {found - expected} unexpected bytes after the {expected} bytes of data that the header "
            f"announces (shape {shape}); the file is damaged or not an IDX file"
        )
    arr = np.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize, offset=header)
    out: npt.NDArray[Any] = arr.reshape(shape).astype(dtype.newbyteorder("="))
    return out


def write_idx(path: str | os.PathLike[str], array: npt.ArrayLike, gzip: bool = True) -> Path:
    """Write ``array`` as an IDX file (used by the tests to create small MNIST-like files).

    Args:
        path: the file to write (its name is not changed; use a ``.gz`` suffix for gzip).
        array: an array of 1 to 16 dimensions whose type is one of :data:`IDX_DTYPES`
            (``uint8``, ``int8``, ``int16``, ``int32``, ``float32``, ``float64``).
        gzip: compress the file with gzip.

    Returns:
        The path written.
    """
    a = np.asarray(array)
    codes = {dt.newbyteorder("="): c for c, dt in IDX_DTYPES.items()}
    native = a.dtype.newbyteorder("=")
    if native not in codes:
        raise DataError(f"IDX cannot store dtype {a.dtype}; use one of {sorted(str(d) for d in codes)}")
    if a.ndim == 0 or a.ndim > _MAX_DIMS:
        raise DataError(f"IDX stores arrays of 1 to {_MAX_DIMS} dimensions, got {a.ndim}")
    code = codes[native]
    body = struct.pack(f">HBB{a.ndim}I", 0, code, a.ndim, *a.shape)
    body += np.ascontiguousarray(a, dtype=IDX_DTYPES[code]).tobytes()
    p = Path(path)
    p.write_bytes(_gzip.compress(body, mtime=0) if gzip else body)
    return p
