"""``import drasclr`` turns on PyTorch's huge-page allocation unless the environment says no."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FAULTS = """
import resource, drasclr, torch
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    x = torch.empty(16 * 2**20); x.fill_(1.0); del x   # 64 MB, as large activations are
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0)
"""


def _run(code: str, **env: str) -> str:
    full = {**os.environ, "PYTHONPATH": str(ROOT)}
    full.pop("THP_MEM_ALLOC_ENABLE", None)
    full.update(env)
    return subprocess.run([sys.executable, "-c", code], env=full, check=True,
                          capture_output=True, text=True).stdout.strip()


def test_import_sets_the_default_and_respects_the_environment() -> None:
    code = "import os, drasclr; print(os.environ['THP_MEM_ALLOC_ENABLE'])"
    assert _run(code) == "1"
    assert _run(code, THP_MEM_ALLOC_ENABLE="0") == "0"


def _thp_mode() -> str:
    path = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    text = path.read_text() if path.exists() else ""
    return text.split("[")[1].split("]")[0] if "[" in text else "unavailable"


@pytest.mark.skipif(_thp_mode() not in ("always", "madvise"),
                    reason="the kernel offers no transparent huge pages")
def test_large_tensors_fault_in_far_fewer_pages() -> None:
    on = int(_run(FAULTS))
    off = int(_run(FAULTS, THP_MEM_ALLOC_ENABLE="0"))
    # 20 x 64 MB: about 16,000 small-page faults per tensor without, a few dozen with
    assert on * 4 < off, (on, off)
