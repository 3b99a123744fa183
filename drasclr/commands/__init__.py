"""One module per ``drasclr`` subcommand; each exposes ``register(subparsers) -> None``.

:func:`drasclr.cli.build_parser` discovers the modules of this package, so adding a stage's
command touches no shared file. A handler takes the parsed arguments and returns an exit code.
"""
