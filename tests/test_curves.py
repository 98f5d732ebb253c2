"""Tests of the offline CURVES generator and the ``digs3pts_1.mat`` loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
from scipy.interpolate import CubicSpline

from shf.data.curves import (
    MARGIN,
    MIN_X_GAP,
    N_INK_POINTS,
    PAPER_SPLIT,
    CurvesSplit,
    curve_ink_points,
    generate_curves,
    load_curves,
    load_curves_mat,
    render_curves,
    sample_control_points,
    spline_polyline,
    synthetic_curves,
)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """2000 images of the default seed, shared by the statistical tests."""
    return generate_curves(2000, seed=0)


# ------------------------------------------------------------------------ generated data


def test_shape_dtype_range(images: np.ndarray) -> None:
    assert images.shape == (2000, 784)
    assert images.dtype == np.float32
    assert images.flags.c_contiguous
    assert images.min() >= 0.0
    assert images.max() <= 1.0
    assert np.all(images.max(axis=1) > 0.3), "every image must hold a visible curve"


@pytest.mark.parametrize("size", [8, 16, 40])
def test_other_sizes(size: int) -> None:
    x = generate_curves(7, seed=1, size=size)
    assert x.shape == (7, size * size)
    assert x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert np.all(x.max(axis=1) > 0.0)


def test_deterministic_and_seeds_differ() -> None:
    a = generate_curves(50, seed=3)
    b = generate_curves(50, seed=3)
    c = generate_curves(50, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # no image of one seed reappears in the other
    assert np.abs(a[:, None, :] - c[None, :, :]).sum(axis=2).min() > 0.1


def test_strokes_are_thin_and_grey(images: np.ndarray) -> None:
    # Measured on 30,000 images: mean pixel 0.0585, 11% of pixels > 0.1, 1% at 1.
    # A 2000-image mean varies by about +-0.001, so the bands below only catch
    # a changed recipe (thicker/fainter strokes, wrong ink scale), not noise.
    assert 0.045 < float(images.mean()) < 0.075
    frac_inked = float((images > 0.1).mean())
    assert 0.06 < frac_inked < 0.18
    assert float((images >= 1.0).mean()) < 0.03
    # per image: a stroke, not a blob filling the image
    per_image = (images > 0.1).mean(axis=1)
    assert per_image.max() < 0.35
    # the ink scale makes a typical image peak at about 1 (median max 1, quartile 0.84)
    peaks = images.max(axis=1)
    assert np.median(peaks) > 0.9
    assert np.quantile(peaks, 0.25) > 0.7


# --------------------------------------------------------------------------- the recipe


def test_control_points_constraints() -> None:
    pts = sample_control_points(np.random.default_rng(0), 5000)
    assert pts.shape == (5000, 3, 2)
    x, y = pts[..., 0], pts[..., 1]
    assert np.all(np.diff(x, axis=1) >= MIN_X_GAP - 1e-12)
    assert pts.min() >= MARGIN and pts.max() <= 28 - MARGIN
    # the draws cover the whole allowed box (not, e.g., integer-only or a sub-range)
    assert x.min() < 2.5 and x.max() > 25.5
    assert y.min() < 2.5 and y.max() > 25.5
    assert not np.allclose(pts, np.round(pts))


def test_control_points_other_size() -> None:
    pts = sample_control_points(np.random.default_rng(1), 100, size=8)
    np.testing.assert_allclose(pts[..., 0], np.tile([2.0, 4.0, 6.0], (100, 1)))
    assert pts[..., 1].min() >= 2.0 and pts[..., 1].max() <= 6.0


def test_spline_is_natural_cubic_through_points() -> None:
    ctrl = sample_control_points(np.random.default_rng(2), 20)
    poly = spline_polyline(ctrl, n_segments=50)
    for c, p in zip(ctrl, poly, strict=True):
        ref = CubicSpline(c[:, 0], c[:, 1], bc_type="natural")
        np.testing.assert_allclose(p[:, 1], ref(p[:, 0]), atol=1e-9)
        np.testing.assert_allclose(p[[0, -1]], c[[0, 2]], atol=1e-12)


def test_ink_points_evenly_spaced_and_inside_margin() -> None:
    ctrl = sample_control_points(np.random.default_rng(3), 3000)
    pts = curve_ink_points(ctrl)
    assert pts.shape == (3000, N_INK_POINTS, 2)
    np.testing.assert_allclose(pts[:, 0], ctrl[:, 0], atol=1e-9)
    np.testing.assert_allclose(pts[:, -1], ctrl[:, 2], atol=1e-9)
    step = np.hypot(*np.diff(pts, axis=1).transpose(2, 0, 1))
    # equal arc-length steps: chords of equal arcs differ only where the curve bends
    assert np.all(step.std(axis=1) / step.mean(axis=1) < 0.02)
    # the spline (and so every ink point) stays in the [2, 26] box
    assert pts.min() >= MARGIN - 1e-12 and pts.max() <= 28 - MARGIN + 1e-12


def test_ink_only_spills_to_outer_ring_by_blur() -> None:
    ctrl = sample_control_points(np.random.default_rng(4), 3000)
    raw = render_curves(ctrl, blur=False).reshape(-1, 28, 28)
    img = render_curves(ctrl).reshape(-1, 28, 28)
    # Ink points lie in [2, 26] on the [0, 28] canvas, i.e. at least 1.5 pixel-centre units
    # from the border, so the bilinear ink never reaches the outermost ring ...
    ring = np.ones((28, 28), dtype=bool)
    ring[1:-1, 1:-1] = False
    assert np.all(raw[:, ring] == 0.0)
    assert raw[:, 1:-1, 1:-1].max() > 0
    # ... and the 3x3 [1,2,1]/4 blur moves at most a quarter of the (row-blurred) ink of
    # the next ring inwards onto it, where the same ink counts with weight 1/2: an edge
    # pixel is at most half its inner neighbour, unless that neighbour is clipped at 1.
    for edge, inner in [
        (img[:, 0, :], img[:, 1, :]),
        (img[:, -1, :], img[:, -2, :]),
        (img[:, :, 0], img[:, :, 1]),
        (img[:, :, -1], img[:, :, -2]),
    ]:
        assert np.all((edge <= 0.5 * inner + 1e-6) | (inner >= 1.0))
    assert img[:, ring].sum() < 0.01 * img.sum()


def test_render_rejects_bad_control_points() -> None:
    with pytest.raises(ValueError, match=r"shape \(n, 3, 2\)"):
        render_curves(np.zeros((4, 2, 2)))
    bad = np.array([[[5.0, 5.0], [4.0, 6.0], [9.0, 7.0]]])
    with pytest.raises(ValueError, match="increasing x"):
        render_curves(bad)
    outside = np.array([[[0.1, 5.0], [4.0, 6.0], [9.0, 7.0]]])
    with pytest.raises(ValueError, match="ink points must lie"):
        render_curves(outside)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 0}, "n must be >= 1"),
        ({"n": -3}, "n must be >= 1"),
        ({"n": 2.0}, "n must be an integer"),
        ({"n": True}, "n must be an integer"),
        ({"n": 2, "size": 7}, "size must be >= 8"),
        ({"n": 2, "size": 28.0}, "size must be an integer"),
        ({"n": 2, "seed": -1}, "seed must be >= 0"),
        ({"n": 2, "seed": "a"}, "seed must be an integer"),
    ],
)
def test_generate_argument_validation(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        generate_curves(**kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- splits


def test_synthetic_splits_disjoint_and_deterministic() -> None:
    s = synthetic_curves(60, 20, 40, seed=7)
    assert isinstance(s, CurvesSplit)
    assert s.train.shape == (60, 784) and s.val.shape == (20, 784) and s.test.shape == (40, 784)
    for a in (s.train, s.val, s.test):
        assert a.dtype == np.float32
    for a, b in [(s.train, s.val), (s.train, s.test), (s.val, s.test)]:
        assert np.abs(a[:, None, :] - b[None, :, :]).sum(axis=2).min() > 0.1
    t = synthetic_curves(60, 20, 40, seed=7)
    np.testing.assert_array_equal(s.train, t.train)
    np.testing.assert_array_equal(s.val, t.val)
    np.testing.assert_array_equal(s.test, t.test)
    # each split has its own stream: its images do not depend on the other sizes
    u = synthetic_curves(60, 5, 9, seed=7)
    np.testing.assert_array_equal(s.train, u.train)
    assert not np.array_equal(s.train, synthetic_curves(60, 20, 40, seed=8).train)


def test_synthetic_validation() -> None:
    with pytest.raises(ValueError, match="n_val must be >= 1"):
        synthetic_curves(10, 0, 5)
    with pytest.raises(ValueError, match="n_train must be an integer"):
        synthetic_curves(10.5, 2, 5)  # type: ignore[arg-type]


def test_load_curves_none_custom_sizes() -> None:
    s = load_curves(None, seed=1, sizes=(30, 10, 5))  # PAPER_SPLIT order: train, test, val
    assert (s.train.shape[0], s.test.shape[0], s.val.shape[0]) == (30, 10, 5)
    ref = synthetic_curves(30, 5, 10, seed=1)
    np.testing.assert_array_equal(s.train, ref.train)
    np.testing.assert_array_equal(s.val, ref.val)
    np.testing.assert_array_equal(s.test, ref.test)
    assert PAPER_SPLIT == (20000, 8000, 2000)


def test_load_curves_missing_file_is_an_error_not_synthetic_data(tmp_path: Path) -> None:
    """A path that was given but is not there must not silently train on synthetic data (issue 10)."""
    from shf.errors import DataFileNotFoundError

    with pytest.raises(DataFileNotFoundError, match=r"not found.*leave out the path"):
        load_curves(tmp_path / "digs3pts_1.mat", sizes=(4, 3, 2))
    with pytest.raises(DataFileNotFoundError, match="is a directory"):
        load_curves(tmp_path, sizes=(4, 3, 2))
    s = load_curves(None, sizes=(4, 3, 2))
    assert (s.train.shape[0], s.test.shape[0], s.val.shape[0]) == (4, 3, 2)


@pytest.mark.parametrize("sizes", [(0, 1, 1), (1, 2), (1, 2, 3, 4), (1.0, 2, 3), [5, -1, 2], "abc"])
def test_load_curves_bad_sizes(sizes: object) -> None:
    with pytest.raises(ValueError, match="sizes"):
        load_curves(None, sizes=sizes)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- .mat file


def _write_mat(path: Path, **variables: np.ndarray) -> Path:
    scipy.io.savemat(path, variables)
    return path


def _fake_data(rows: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 1.0, size=(rows, 784))


def test_load_curves_mat_split(tmp_path: Path) -> None:
    bdata, bdatatest = _fake_data(12, 0), _fake_data(10, 1)
    path = _write_mat(tmp_path / "digs3pts_1.mat", bdata=bdata, bdatatest=bdatatest)
    s = load_curves_mat(path)
    assert s.train.dtype == s.val.dtype == s.test.dtype == np.float32
    np.testing.assert_array_equal(s.train, bdata.astype(np.float32))
    np.testing.assert_array_equal(s.test, bdatatest[:8].astype(np.float32))  # first 80%
    np.testing.assert_array_equal(s.val, bdatatest[8:].astype(np.float32))  # last 20%
    # load_curves prefers the file when it exists; sizes and seed are then unused
    t = load_curves(str(path), sizes=(1, 1, 1))
    np.testing.assert_array_equal(t.train, s.train)
    np.testing.assert_array_equal(t.val, s.val)


def test_load_curves_mat_accepts_edges_and_integers(tmp_path: Path) -> None:
    bdata = np.zeros((3, 784), dtype=np.uint8)
    bdata[0, :5] = 1
    path = _write_mat(tmp_path / "c.mat", bdata=bdata, bdatatest=np.ones((5, 784)))
    s = load_curves_mat(path)
    assert s.train.max() == 1.0 and s.test.shape == (4, 784) and s.val.shape == (1, 784)


@pytest.mark.parametrize(
    ("variables", "match"),
    [
        ({"bdata": _fake_data(4, 0)}, "'bdatatest' is missing"),
        ({"bdatatest": _fake_data(6, 0)}, "'bdata' is missing"),
        ({"bdata": np.zeros((4, 783)), "bdatatest": _fake_data(6, 0)}, r"shape \(n, 784\)"),
        ({"bdata": _fake_data(4, 0), "bdatatest": np.zeros((6, 28, 28))}, r"shape \(n, 784\)"),
        ({"bdata": _fake_data(4, 0), "bdatatest": _fake_data(4, 1)}, "at least 5 rows"),
        ({"bdata": _fake_data(4, 0) * 1.5, "bdatatest": _fake_data(6, 1)}, r"in \[0, 1\]"),
        ({"bdata": _fake_data(4, 0), "bdatatest": _fake_data(6, 1) - 0.5}, r"in \[0, 1\]"),
        (
            {"bdata": np.full((4, 784), np.nan), "bdatatest": _fake_data(6, 1)},
            "NaN or Inf",
        ),
    ],
)
def test_load_curves_mat_errors(tmp_path: Path, variables: dict[str, np.ndarray], match: str) -> None:
    path = _write_mat(tmp_path / "bad.mat", **variables)
    with pytest.raises(ValueError, match=match):
        load_curves_mat(path)


def test_load_curves_mat_not_a_mat_file(tmp_path: Path) -> None:
    path = tmp_path / "junk.mat"
    path.write_bytes(b"this is not a MATLAB file at all" * 10)
    with pytest.raises(ValueError, match=r"junk\.mat"):
        load_curves_mat(path)
    with pytest.raises(FileNotFoundError):
        load_curves_mat(tmp_path / "absent.mat")


def test_a_long_generation_is_announced_and_one_too_big_for_the_memory_refused(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from shf.data import curves
    from shf.errors import DataError

    monkeypatch.setattr(curves, "ANNOUNCE_IMAGES", 30)
    with caplog.at_level(logging.WARNING, logger="shf.data.curves"):
        curves.synthetic_curves(20, 5, 5)
    assert [r.getMessage() for r in caplog.records] == [
        "generating 30 synthetic CURVES images (about 0 MB): this takes a while"
    ]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="shf.data.curves"):
        curves.synthetic_curves(20, 5, 4)
    assert not caplog.records
    monkeypatch.setattr(curves, "_total_memory", lambda: 10**6)
    with pytest.raises(DataError, match=r"400 synthetic CURVES images need about 1 MB .* machine's 1 MB"):
        curves.load_curves(sizes=(300, 50, 50))
