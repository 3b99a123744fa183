"""drasclr.imaging.overlap.dice: the one Dice (MONAI), its empty-mask rule and its callers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from drasclr.imaging.overlap import dice


def _formula(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a != 0, b != 0
    return 2.0 * int(np.count_nonzero(a & b)) / (int(a.sum()) + int(b.sum()))


def test_identical_and_disjoint() -> None:
    a = np.zeros((5, 6, 7), bool)
    a[1:3, 2:5, :4] = True
    assert dice(a, a) == 1.0
    b = np.zeros_like(a)
    b[4, :, :] = True
    assert dice(a, b) == 0.0 and dice(b, a) == 0.0


def test_empty_masks() -> None:
    """Both empty: ``empty`` (default NaN); exactly one empty: 0 by the formula."""
    z = np.zeros((4, 4, 4), np.uint8)
    a = z.copy()
    a[0, 0, 0] = 1
    assert math.isnan(dice(z, z))
    assert dice(z, z, empty=1.0) == 1.0
    assert dice(z, z, empty=0.0) == 0.0
    for e in (float("nan"), 1.0):
        assert dice(a, z, empty=e) == 0.0 and dice(z, a, empty=e) == 0.0


def test_agrees_bit_for_bit_with_the_formula() -> None:
    """2|A n B| / (|A| + |B|) in float64, exactly (MONAI is fed float64 one-hot), symmetric, for
    any dtype with non-zero = inside."""
    rng = np.random.default_rng(0)
    for k in range(20):
        shape = tuple(rng.integers(1, 12, size=3))
        a = rng.random(shape) < rng.random()
        b = rng.random(shape) < rng.random()
        if not (a.any() or b.any()):
            continue
        want = _formula(a, b)
        got = dice(a, b)
        assert isinstance(got, float) and got == want, (k, got, want)
        assert dice(b, a) == want
        assert dice(a.astype(np.uint8) * 50, b.astype(np.int16) * -3) == want
        assert dice(a.astype(np.float32), b) == want
    a = np.zeros((4, 4, 4), np.uint8)
    b = a.copy()
    a[:2] = 1
    b[1:3] = 50
    assert dice(a, b) == 0.5
    assert dice(a.tolist(), b.tolist()) == 0.5  # array-likes


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="shape"):
        dice(np.ones((2, 3)), np.ones((3, 2)))


def test_callers_keep_their_empty_rules() -> None:
    """Registration QC counts two empty masks as agreeing (1.0); dense detection Dice per subtype
    and overall report NaN (subtype absent on both sides)."""
    from drasclr.evaluate import detection
    from drasclr.imaging import register

    z = np.zeros((3, 3, 3), np.uint8)
    a = z.copy()
    a[1] = 1
    assert register.dice(z, z) == 1.0 and register.dice(a, z) == 0.0
    assert register.dice(a, a) == 1.0
    truth = z.copy()
    truth[0] = 1  # cle only
    d = detection.dice_per_subtype(truth, truth)
    assert d["cle"] == 1.0 and all(math.isnan(d[k]) for k in ("pse", "ple", "ggo"))
    ov = detection.overlap_by_subtype(np.zeros(z.shape, bool), z)
    assert math.isnan(ov["dice_emphysema"])
    assert detection.overlap_by_subtype(truth > 0, truth)["dice_emphysema"] == 1.0
