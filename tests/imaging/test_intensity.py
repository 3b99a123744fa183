"""drasclr.imaging.intensity: the HU window and the encoder's input scaling."""

import torch

from drasclr.imaging import intensity
from drasclr.imaging.intensity import HU_WINDOW, hu_to_input


def test_hu_to_input() -> None:
    hu = torch.tensor([-3000, -1024, -392, 240, 3000], dtype=torch.int16)
    out = hu_to_input(hu)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, torch.tensor([-1.0, -1.0, 0.0, 1.0, 1.0]))

def test_one_window_for_store_and_model() -> None:
    from drasclr.store.layout import HU_WINDOW as STORE_WINDOW

    assert STORE_WINDOW is HU_WINDOW
    assert (intensity.HU_MIN, intensity.HU_MAX) == (float(HU_WINDOW[0]), float(HU_WINDOW[1]))


def test_parenchyma_map_is_monotonic_and_keeps_the_ends() -> None:
    hu = torch.linspace(-1024, 240, 1265)
    x = hu_to_input(hu)
    y = intensity.map_input(x, "parenchyma")
    assert torch.all(torch.diff(y) > 0)
    torch.testing.assert_close(y[[0, -1]], torch.tensor([-1.0, 1.0]))
    knee = int(intensity.PARENCHYMA_KNEE_HU - intensity.HU_MIN)
    assert abs(float(y[knee]) - (-1.0 + 2 * intensity.PARENCHYMA_SHARE)) < 1e-5
    # a 100 HU step in the parenchyma is stretched, one among vessels squeezed
    lo = float(y[174] - y[74]) / float(x[174] - x[74])  # -850 vs -950 HU
    hi = float(y[1164] - y[1064]) / float(x[1164] - x[1064])  # 140 vs 40 HU
    assert lo > 2.0 and hi < 0.5
    assert intensity.map_input(x, "linear") is x


def test_unknown_input_map_is_an_error() -> None:
    import pytest

    with pytest.raises(ValueError, match="input map"):
        intensity.map_input(torch.zeros(3), "log")
