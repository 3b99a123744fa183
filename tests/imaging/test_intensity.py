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
