"""drasclr: DrasCLR self-supervised representations of 3D lung CT, on Ray.

``import drasclr`` never starts Ray; the orchestration lives in the stage entry points.

It sets one process default: ``THP_MEM_ALLOC_ENABLE=1`` (unless the environment already sets
it), so that PyTorch's CPU allocator aligns tensors of 2 MB and more to huge pages and advises the
kernel to back them with transparent huge pages. A 3D encoder's activations are tens of MB; glibc
maps each such block fresh from the kernel and faults it in 4 KB page by page on every step.
With huge pages, training on the bench store took 11-13x fewer page faults and about 30 % less
kernel time; step times moved by less than the machine's run-to-run noise (docs/results.md,
"Huge pages"). PyTorch reads the variable once, at the
process's first large allocation, so it is set here, before any drasclr code allocates; Ray
workers inherit it by importing drasclr. Set ``THP_MEM_ALLOC_ENABLE=0`` to opt out.
"""

import os as _os

_os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__version__ = "0.1.0"
