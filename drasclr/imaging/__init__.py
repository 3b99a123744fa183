"""Pure image math on arrays + geometry: read, resample, segment, register, atlas, patches.

Modules (import them directly; this package imports none of them, so ``import drasclr.imaging``
stays light):

- :mod:`~drasclr.imaging.geometry`: Geometry, Volume, the voxel <-> LPS mm pair, the conventions.
- :mod:`~drasclr.imaging.truncation`: detecting image files cut short before ITK reads them.
- :mod:`~drasclr.imaging.io`: reading CT (HU checks) and masks, writing images, content hash.
- :mod:`~drasclr.imaging.intensity`: the HU window and the model-input scaling to [-1, 1].
- :mod:`~drasclr.imaging.resample`: isotropic resampling, block means, the clipped 1 mm CT.
- :mod:`~drasclr.imaging.segment`: lung segmentation config, label convention, backend dispatch.
- :mod:`~drasclr.imaging.segment_threshold`: the numpy/scipy threshold segmentation backend.
- :mod:`~drasclr.imaging.segment_lungmask`: the lungmask R231 U-Net backend (local weights).
- :mod:`~drasclr.imaging.register`: affine mask registration to the atlas (ANTs) and its QC.
- :mod:`~drasclr.imaging.align_init`: starting transforms for that registration.
- :mod:`~drasclr.imaging.atlas`: the atlas, its landmark grid and neighbour table.
- :mod:`~drasclr.imaging.patches`: patch cutting at landmarks, field-of-view flags, lung fraction.
- :mod:`~drasclr.imaging.boxes`: world-space boxes on image arrays (bounds, counts, box patches).
- :mod:`~drasclr.imaging.density`: LAA-950 at image and patch level.
- :mod:`~drasclr.imaging.overlap`: the one Dice (MONAI's ``compute_dice``, explicit empty rule).
- :mod:`~drasclr.imaging.augment`: batched patch augmentation on the training device (torch).

Import rule: ``imaging`` sits just above the base modules (``config``, ``fsutil``, ``tables``,
...) and imports only them and its own modules; never Ray, never a stage package (``store``,
``preprocess``, ``train``, ...). Image math takes ``(array, geometry)``, physical points in LPS
mm; file I/O stays in ``io`` (and the atlas folder in ``atlas``).
"""
