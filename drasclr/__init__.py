"""drasclr: DrasCLR self-supervised representations of 3D lung CT, on Ray.

``import drasclr`` never starts Ray; the orchestration lives in the stage entry points.
"""

__version__ = "0.1.0"
