"""Benchmarks (``drasclr bench NAME``): one module per benchmark, each exposing
``register(subparsers) -> None``. They print figures and ratios measured in one run."""
