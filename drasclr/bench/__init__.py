"""Benchmarks (``drasclr bench NAME``): one module per benchmark, each exposing
``register(subparsers) -> None``, which adds the benchmark's parser and sets its ``bench_run``
default: ``bench_run(args, say) -> result`` runs the benchmark and returns its figures as data
(``say(line)`` takes progress lines, where a benchmark has any). The figures and ratios are
printed by :mod:`drasclr.commands.bench`, not here."""
