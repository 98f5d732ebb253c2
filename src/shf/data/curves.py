"""The CURVES data set: an offline, seeded generator and a loader for ``digs3pts_1.mat``.

CURVES (Hinton & Salakhutdinov 2006) holds 28x28 images of smooth curves drawn through
three random points in 2-D. The original file, ``digs3pts_1.mat`` (variables ``bdata``,
20000 x 784, and ``bdatatest``, 10000 x 784, one image per row, reals in [0, 1]), cannot
be downloaded here, so :func:`generate_curves` re-creates the data from the published
recipe. Each step of the recipe, and the choice made where the recipe is silent:

1. **Three control points** (:func:`sample_control_points`). The canvas is the square
   ``[0, size]^2`` in pixel units; pixel ``(row r, column c)`` covers
   ``[c, c+1) x [r, r+1)`` and its centre is ``(c + 0.5, r + 0.5)``. ``x`` runs along the
   columns (left to right), ``y`` along the rows (top to bottom). "Coordinates in
   [2, 26] on the 28x28 grid" is read as a 2-pixel margin on *every* side of this canvas
   (``[2, size - 2]``), which keeps the images symmetric. The x coordinates are
   increasing with gaps of at least 2 pixels: three sorted uniforms on
   ``[2, size - 6]`` shifted by ``(0, 2, 4)``, which is exactly the uniform distribution
   on the allowed region (a volume-preserving bijection, no rejection needed). The y
   coordinates are i.i.d. uniform on ``[2, size - 2]``. Coordinates are continuous
   (sub-pixel), not integers.
2. **A smooth spline through the points**: the *natural cubic spline* ``y = S(x)``
   (second derivative 0 at both ends, C2 at the middle point) from the first to the
   last point, evaluated in closed form for all images at once. Being a graph over x,
   it never folds back, which is what increasing x coordinates imply. A spline through
   three points can overshoot the box between the points (about 16% of uniform draws
   leave ``[2, size - 2]``); such draws are rejected and redrawn, so every curve lies
   inside the margin. The rejection slightly disfavours configurations with a steep
   middle point near the border.
3. **60 evenly spaced points along the curve**: evenly spaced in *arc length*,
   first and last on the end control points. The spline is sampled at 257 points
   (uniform in x), the polyline's cumulative length is inverted by linear
   interpolation. The ink points are convex combinations of polyline vertices, so
   they stay inside the box too.
4. **Bilinear ink**: each point puts :data:`INK_PER_POINT` units of ink on the 4 pixels
   whose centres surround it, with bilinear weights. Points lie in ``[2, size - 2]``,
   so only pixels ``1 .. size - 2`` receive ink here; the outermost ring is empty.
   The ink per point is constant (as in Hinton's pen-drawing model), so longer curves
   are a lighter grey (a 48-px curve peaks at about 0.5) and very short ones (5 px)
   saturate into a small blob. Its value, 0.8, makes a curve of median length
   (about 22 px, i.e. 0.38 px between ink points) peak at about 1 after the blur: the
   median image maximum is 1.0, the lower quartile 0.84.
5. **Blur with a small kernel**: the separable 3x3 binomial kernel
   ``[1, 2, 1] / 4`` (outer product with itself), zero padding. It widens a stroke
   to about 2-3 pixels of grey and spills at most one pixel, so the outermost ring
   receives ink only from the blur.
6. **Clip intensities at 1**, flatten each image row-major, store as float32.

Generating 30,000 images takes about 1.7-2 s on 2 cores (everything is vectorised over
images; work is done in chunks of 4096 images, peak memory about 0.25 GB). Statistics of
the generated images: mean pixel value 0.0585, 11% of pixels above 0.1, 1% at 1.

Splits. The paper (Table 1) uses 20,000 train / 8,000 test / 2,000 validation images
(:data:`PAPER_SPLIT`). :func:`synthetic_curves` draws the three splits from independent
random streams spawned from one :class:`numpy.random.SeedSequence`, and
:func:`load_curves_mat` takes train = ``bdata`` and test / validation = the first 80% /
last 20% of ``bdatatest`` (8,000 / 2,000 for the real file).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import scipy.io

from shf.errors import ConfigError, DataError, DataFileNotFoundError

FloatArray = npt.NDArray[np.float64]
"""Coordinates and intermediate images (float64)."""
ImageArray = npt.NDArray[np.float32]
"""Images, one flattened (row-major) image per row, float32 in [0, 1]."""

IMAGE_SIZE: Final[int] = 28
"""Side of a CURVES image in pixels."""
N_INK_POINTS: Final[int] = 60
"""Number of evenly spaced points (in arc length) that ink each curve."""
MARGIN: Final[float] = 2.0
"""Control points lie in ``[MARGIN, size - MARGIN]`` on the ``[0, size]`` canvas."""
MIN_X_GAP: Final[float] = 2.0
"""Minimum gap between consecutive x coordinates of the control points, in pixels."""
INK_PER_POINT: Final[float] = 0.8
"""Ink each of the 60 points spreads (bilinearly) over its 4 nearest pixels."""
BLUR_KERNEL: Final[tuple[float, float, float]] = (0.25, 0.5, 0.25)
"""1-D binomial kernel; the 2-D blur is its outer product with itself."""
PAPER_SPLIT: Final[tuple[int, int, int]] = (20000, 8000, 2000)
"""Paper's split sizes (Table 1), in the order **train, test, validation**."""

_DENSE_SEGMENTS: Final[int] = 256
_CHUNK: Final[int] = 4096
log = logging.getLogger(__name__)
ANNOUNCE_IMAGES = 200_000
"""Synthetic generations of at least this many images (10 s and more) are announced with a
``WARNING`` log record (what, how many, how much memory), so a long wait is not a silent one."""
_MAX_REJECTION_ROUNDS: Final[int] = 1000
_MAT_WIDTH: Final[int] = IMAGE_SIZE * IMAGE_SIZE


@dataclass(frozen=True)
class CurvesSplit:
    """Train, validation and test images, each ``(n, 784)`` float32 in [0, 1]."""

    train: ImageArray
    val: ImageArray
    test: ImageArray


# --------------------------------------------------------------------------- validation


def _check_int(name: str, value: object, minimum: int) -> int:
    """Return ``value`` as an ``int`` if it is an integer ``>= minimum``, else raise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_size(size: object) -> int:
    return _check_int("size", size, 8)


def _check_control(control: FloatArray) -> FloatArray:
    arr = np.asarray(control, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[1:] != (3, 2):
        raise ConfigError(f"control points must have shape (n, 3, 2), got {arr.shape}")
    if not np.all(np.diff(arr[:, :, 0], axis=1) > 0):
        raise ConfigError("control points must have strictly increasing x coordinates")
    return arr


# ------------------------------------------------------------------------------ geometry


def spline_polyline(control: FloatArray, n_segments: int = _DENSE_SEGMENTS) -> FloatArray:
    """Sample the natural cubic spline ``y = S(x)`` through each image's 3 control points.

    Args:
        control: ``(n, 3, 2)`` control points ``(x, y)`` with increasing x.
        n_segments: number of segments of the returned polyline.

    Returns:
        ``(n, n_segments + 1, 2)`` points of the spline at x uniformly spaced from the first
        to the last control point (both included).

    The natural spline has ``S'' = 0`` at the two ends, so with three knots its only unknown
    is the second derivative at the middle knot,
    ``M = 3 ((y2 - y1) / h1 - (y1 - y0) / h0) / (h0 + h1)``, ``h0 = x1 - x0``,
    ``h1 = x2 - x1``; each piece is then the standard cubic in closed form.
    """
    ctrl = _check_control(control)
    n_segments = _check_int("n_segments", n_segments, 1)
    x0, x1, x2 = (ctrl[:, i, 0:1] for i in range(3))
    y0, y1, y2 = (ctrl[:, i, 1:2] for i in range(3))
    h0 = x1 - x0
    h1 = x2 - x1
    m = 3.0 * ((y2 - y1) / h1 - (y1 - y0) / h0) / (h0 + h1)
    t = np.linspace(0.0, 1.0, n_segments + 1)
    x = x0 + (x2 - x0) * t  # (n, n_segments + 1)
    a = x - x0  # distance from the first knot, used on [x0, x1]
    b = x2 - x  # distance to the last knot, used on [x1, x2]
    left = y0 * (x1 - x) / h0 + y1 * a / h0 + m * (a**3 / h0 - h0 * a) / 6.0
    right = y1 * b / h1 + y2 * (x - x1) / h1 + m * (b**3 / h1 - h1 * b) / 6.0
    y = np.where(x <= x1, left, right)
    return np.stack([x, y], axis=-1)


def curve_ink_points(control: FloatArray, n_points: int = N_INK_POINTS) -> FloatArray:
    """Points evenly spaced in arc length along each image's spline.

    Args:
        control: ``(n, 3, 2)`` control points ``(x, y)`` with increasing x.
        n_points: points per curve (60 in the recipe); the first and last are the end
            control points.

    Returns:
        ``(n, n_points, 2)`` ink positions ``(x, y)`` on the ``[0, size]`` canvas.

    The arc length of the dense spline polyline (:func:`spline_polyline`) is accumulated and
    inverted by linear interpolation, for all images at once: each image's normalised
    cumulative length lies in [0, 1], so offsetting image ``i`` by ``2 i`` gives one
    increasing array that a single :func:`numpy.searchsorted` can search.
    """
    n_points = _check_int("n_points", n_points, 2)
    poly = spline_polyline(control)
    n, n_vertices, _ = poly.shape
    seg = np.hypot(np.diff(poly[..., 0], axis=1), np.diff(poly[..., 1], axis=1))
    cum = np.concatenate([np.zeros((n, 1)), np.cumsum(seg, axis=1)], axis=1)
    cum /= cum[:, -1:]  # normalised arc length, last entry exactly 1
    target = np.linspace(0.0, 1.0, n_points)
    offset = 2.0 * np.arange(n, dtype=np.float64)[:, None]
    j = np.searchsorted((cum + offset).ravel(), (target + offset).ravel(), side="right")
    j = j.reshape(n, n_points) - 1 - (np.arange(n) * n_vertices)[:, None]
    j = np.clip(j, 0, n_vertices - 2)
    rows = np.arange(n)[:, None]
    c0 = cum[rows, j]
    c1 = cum[rows, j + 1]
    frac = np.clip((target - c0) / (c1 - c0), 0.0, 1.0)[..., None]
    p0 = poly[rows, j]
    p1 = poly[rows, j + 1]
    out: FloatArray = p0 + frac * (p1 - p0)
    return out


def sample_control_points(rng: np.random.Generator, n: int, *, size: int = IMAGE_SIZE) -> FloatArray:
    """Draw the three control points of ``n`` curves.

    Args:
        rng: the random stream to draw from.
        n: number of curves, ``>= 1``.
        size: image side in pixels, ``>= 8``.

    Returns:
        ``(n, 3, 2)`` points ``(x, y)``: x increasing with gaps ``>= MIN_X_GAP``, all
        coordinates in ``[MARGIN, size - MARGIN]``, and the spline through them (hence every
        ink point) inside that box too.

    x: three sorted uniforms on ``[2, size - 6]`` plus ``(0, 2, 4)`` (uniform on the set of
    admissible x triples). y: i.i.d. uniform on ``[2, size - 2]``. Draws whose spline leaves
    the box are redrawn until none is left (about 16% per round for uniform draws).
    """
    n = _check_int("n", n, 1)
    size = _check_size(size)
    lo, hi = MARGIN, size - MARGIN
    shift = np.array([0.0, MIN_X_GAP, 2.0 * MIN_X_GAP])
    out = np.empty((n, 3, 2), dtype=np.float64)
    todo = np.arange(n)
    for _ in range(_MAX_REJECTION_ROUNDS):
        m = todo.size
        x = np.sort(rng.uniform(lo, hi - 2.0 * MIN_X_GAP, size=(m, 3)), axis=1) + shift
        y = rng.uniform(lo, hi, size=(m, 3))
        cand = np.stack([x, y], axis=-1)
        ok = np.empty(m, dtype=bool)
        for start in range(0, m, _CHUNK):  # chunks bound the (m, 257) temporaries
            ys = spline_polyline(cand[start : start + _CHUNK])[..., 1]
            ok[start : start + _CHUNK] = (ys.min(axis=1) >= lo) & (ys.max(axis=1) <= hi)
        out[todo[ok]] = cand[ok]
        todo = todo[~ok]
        if todo.size == 0:
            return out
    raise RuntimeError("could not draw curves inside the image margin")  # pragma: no cover


# ----------------------------------------------------------------------------- rendering


def _splat_bilinear(points: FloatArray, size: int, ink: float) -> FloatArray:
    """Spread ``ink`` from each point over the 4 pixels whose centres surround it."""
    n = points.shape[0]
    u = points[..., 0] - 0.5  # column coordinate in pixel-centre units
    v = points[..., 1] - 0.5  # row coordinate in pixel-centre units
    if u.min() < 0.0 or v.min() < 0.0 or u.max() > size - 1 or v.max() > size - 1:
        raise ConfigError(f"ink points must lie in [0.5, {size - 0.5}] on the canvas")
    c0 = np.minimum(np.floor(u).astype(np.intp), size - 2)
    r0 = np.minimum(np.floor(v).astype(np.intp), size - 2)
    fu = u - c0
    fv = v - r0
    base = (np.arange(n, dtype=np.intp) * (size * size))[:, None] + r0 * size + c0
    idx = np.concatenate([base, base + 1, base + size, base + size + 1], axis=1)
    w = ink * np.concatenate([(1 - fu) * (1 - fv), fu * (1 - fv), (1 - fu) * fv, fu * fv], axis=1)
    counts = np.bincount(idx.ravel(), weights=w.ravel(), minlength=n * size * size)
    flat: FloatArray = np.asarray(counts, dtype=np.float64)  # stubs type bincount as int
    return flat.reshape(n, size, size)


def _blur(images: FloatArray) -> FloatArray:
    """Separable 3x3 binomial blur (``[1, 2, 1] / 4`` per axis) with zero padding."""
    k_side, k_mid, _ = BLUR_KERNEL
    out = images
    for axis in (1, 2):
        res = k_mid * out
        lead = [slice(None)] * 3
        trail = [slice(None)] * 3
        lead[axis] = slice(1, None)
        trail[axis] = slice(None, -1)
        res[tuple(lead)] += k_side * out[tuple(trail)]
        res[tuple(trail)] += k_side * out[tuple(lead)]
        out = res
    return out


def render_curves(control: FloatArray, *, size: int = IMAGE_SIZE, blur: bool = True) -> ImageArray:
    """Draw the curves through the given control points (steps 3-6 of the recipe).

    Args:
        control: ``(n, 3, 2)`` control points, e.g. from :func:`sample_control_points`.
        size: image side in pixels, ``>= 8``.
        blur: apply the 3x3 blur (``False`` only to inspect the raw bilinear ink).

    Returns:
        ``(n, size * size)`` float32 images in [0, 1], flattened row-major.
    """
    size = _check_size(size)
    ctrl = _check_control(control)
    out = np.empty((ctrl.shape[0], size * size), dtype=np.float32)
    for start in range(0, ctrl.shape[0], _CHUNK):
        part = ctrl[start : start + _CHUNK]
        img = _splat_bilinear(curve_ink_points(part), size, INK_PER_POINT)
        if blur:
            img = _blur(img)
        np.minimum(img, 1.0, out=img)
        out[start : start + part.shape[0]] = img.reshape(part.shape[0], -1)
    return out


def _generate(rng: np.random.Generator, n: int, size: int) -> ImageArray:
    return render_curves(sample_control_points(rng, n, size=size), size=size)


def _check_seed(seed: object) -> int:
    return _check_int("seed", seed, 0)


def generate_curves(n: int, *, seed: int = 0, size: int = IMAGE_SIZE) -> ImageArray:
    """Generate ``n`` CURVES images with a seeded generator.

    Args:
        n: number of images, ``>= 1``.
        seed: non-negative integer seed of :func:`numpy.random.default_rng`; the same seed
            gives identical images.
        size: image side in pixels, ``>= 8`` (28 for CURVES). Margin, x gap and the number
            of ink points are in pixels and do not scale with ``size``.

    Returns:
        ``(n, size * size)`` float32 array in [0, 1], one row-major flattened image per row.
    """
    n = _check_int("n", n, 1)
    size = _check_size(size)
    return _generate(np.random.default_rng(_check_seed(seed)), n, size)


def _total_memory() -> int | None:
    """This machine's physical memory in bytes, or None where the system does not say."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def _gb(nbytes: float) -> str:
    return f"{nbytes / 1e9:.1f} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:.0f} MB"


def _check_generation(n: int) -> None:
    """Refuse ``n`` synthetic images whose float32 array alone would not fit in this machine's
    memory (:class:`DataError`); announce a long generation (:data:`ANNOUNCE_IMAGES`)."""
    need = n * IMAGE_SIZE * IMAGE_SIZE * np.dtype(np.float32).itemsize
    total = _total_memory()
    if total is not None and need > total:
        raise DataError(
            f"{n:,} synthetic CURVES images need about {_gb(need)} of memory, more than this machine's "
            f"{_gb(total)}: lower data.n_train, data.n_val or data.n_test"
        )
    if n >= ANNOUNCE_IMAGES:
        log.warning(
            "generating %s synthetic CURVES images (about %s): this takes a while", f"{n:,}", _gb(need)
        )


def synthetic_curves(
    n_train: int = 20000, n_val: int = 2000, n_test: int = 8000, *, seed: int = 0
) -> CurvesSplit:
    """The offline CURVES: train, validation and test sets drawn from disjoint streams.

    The three splits use the three children of ``numpy.random.SeedSequence(seed).spawn(3)``
    (train, val, test in that order), so they are independent draws, and the images of one
    split do not depend on the sizes of the others.
    """
    n_train = _check_int("n_train", n_train, 1)
    n_val = _check_int("n_val", n_val, 1)
    n_test = _check_int("n_test", n_test, 1)
    _check_generation(n_train + n_val + n_test)
    ss_train, ss_val, ss_test = np.random.SeedSequence(_check_seed(seed)).spawn(3)
    return CurvesSplit(
        train=_generate(np.random.default_rng(ss_train), n_train, IMAGE_SIZE),
        val=_generate(np.random.default_rng(ss_val), n_val, IMAGE_SIZE),
        test=_generate(np.random.default_rng(ss_test), n_test, IMAGE_SIZE),
    )


# ------------------------------------------------------------------------------- loading


def _mat_images(mat: dict[str, Any], name: str, path: Path, min_rows: int) -> ImageArray:
    """Validate variable ``name`` of a loaded .mat file and return it as float32."""
    if name not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise DataError(f"{path}: variable {name!r} is missing (found {found})")
    arr = np.asarray(mat[name])
    if arr.ndim != 2 or arr.shape[1] != _MAT_WIDTH:
        raise DataError(
            f"{path}: {name!r} must have shape (n, {_MAT_WIDTH}), one 28x28 image per row; got {arr.shape}"
        )
    if arr.shape[0] < min_rows:
        raise DataError(f"{path}: {name!r} needs at least {min_rows} rows, got {arr.shape[0]}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise DataError(f"{path}: {name!r} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{path}: {name!r} contains NaN or Inf")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0.0 or hi > 1.0:
        raise DataError(f"{path}: {name!r} values must lie in [0, 1], found [{lo:g}, {hi:g}]")
    return np.ascontiguousarray(arr, dtype=np.float32)


def load_curves_mat(path: str | os.PathLike[str]) -> CurvesSplit:
    """Load the original ``digs3pts_1.mat`` and split it as in the paper.

    The file holds ``bdata`` (20000 x 784) and ``bdatatest`` (10000 x 784), one image per
    row, reals in [0, 1]. Split: train = all of ``bdata``; test = the first 80% of the rows
    of ``bdatatest`` and validation = the last 20% (``len // 5`` rows), i.e. 8,000 / 2,000
    for the real file, matching the paper's 20,000 / 8,000 / 2,000. The paper does not
    say which test rows form the validation set; taking the tail keeps the first 8,000
    test rows, which every earlier use of the file evaluates on. Rows are kept as stored
    (the original images were flattened by MATLAB, i.e. column-major, which is a fixed
    pixel permutation and irrelevant to a fully connected autoencoder).

    Raises:
        DataFileNotFoundError: the file does not exist (a ``FileNotFoundError``).
        DataError (a ``ValueError``): the file is not a MATLAB v4/v5/v7 file, a variable
            is missing, has the wrong shape (not 784 columns, fewer than 1 row in
            ``bdata`` or 5 in ``bdatatest``), is not numeric, or holds values outside
            [0, 1] or NaN/Inf.
    """
    p = Path(path)
    if not p.is_file():
        raise DataFileNotFoundError(f"CURVES file not found: {p}")
    try:
        mat = scipy.io.loadmat(str(p), appendmat=False)
    except NotImplementedError as exc:  # MATLAB v7.3 (HDF5)
        raise DataError(f"{p}: MATLAB v7.3 (HDF5) files are not supported: {exc}") from exc
    except (ValueError, TypeError, OSError) as exc:
        raise DataError(f"{p}: not a readable MATLAB .mat file: {exc}") from exc
    train = _mat_images(mat, "bdata", p, 1)
    test_all = _mat_images(mat, "bdatatest", p, 5)
    n_val = test_all.shape[0] // 5
    n_test = test_all.shape[0] - n_val
    return CurvesSplit(
        train=train,
        val=np.ascontiguousarray(test_all[n_test:]),
        test=np.ascontiguousarray(test_all[:n_test]),
    )


def load_curves(
    path: str | os.PathLike[str] | None = None,
    *,
    seed: int = 0,
    sizes: tuple[int, int, int] | None = None,
) -> CurvesSplit:
    """CURVES from ``digs3pts_1.mat`` when available, else the offline synthetic version.

    Args:
        path: the original ``digs3pts_1.mat``. When it is given and exists it is loaded
            with :func:`load_curves_mat` (``seed`` and ``sizes`` are then unused; slice the
            arrays for smaller sets); a path that is not a file is an error. When it is
            ``None``, synthetic data are generated with :func:`synthetic_curves`.
        seed: seed of the synthetic data.
        sizes: synthetic split sizes in the order of :data:`PAPER_SPLIT`,
            **(train, test, validation)**; defaults to the paper's (20000, 8000, 2000).

    Returns:
        The train / validation / test images.
    """
    if sizes is None:
        sizes = PAPER_SPLIT
    if not isinstance(sizes, (tuple, list)) or len(sizes) != 3:
        raise ConfigError(f"sizes must be a tuple (train, test, val) of 3 integers, got {sizes!r}")
    n_train, n_test, n_val = (
        _check_int(f"sizes[{i}] ({name})", v, 1)
        for i, (name, v) in enumerate(zip(("train", "test", "val"), sizes, strict=True))
    )
    seed = _check_seed(seed)
    if path is not None:
        p = Path(path)
        if p.is_file():
            return load_curves_mat(p)
        what = "is a directory, not the CURVES file" if p.is_dir() else "not found"
        raise DataFileNotFoundError(
            f"CURVES file {p} {what}; leave out the path for the offline synthetic CURVES"
        )
    return synthetic_curves(n_train, n_val, n_test, seed=seed)
