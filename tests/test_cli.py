"""The ``drasclr`` command line: every subcommand, option and positional explains itself in --help.

Builds the parser as :func:`drasclr.cli.main` does and walks its whole tree; no handler runs, so
no Ray instance starts.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from drasclr.cli import build_parser


def _parsers(
    parser: argparse.ArgumentParser, path: str = "drasclr"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """``(command path, parser)`` for the parser and every subparser below it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def _name(action: argparse.Action) -> str:
    return "/".join(action.option_strings) or str(action.metavar or action.dest)


PARSERS = dict(_parsers(build_parser()))


def test_the_tree_holds_every_command() -> None:
    for path in ("drasclr bench kernels", "drasclr bench science", "drasclr preprocess",
                 "drasclr synth report", "drasclr pretrain", "drasclr sweep"):
        assert path in PARSERS, sorted(PARSERS)


@pytest.mark.parametrize("path", sorted(PARSERS))
def test_every_option_and_positional_has_help(path: str) -> None:
    parser = PARSERS[path]
    missing = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS:
            continue
        if not (action.help or "").strip():
            missing.append(_name(action))
        if isinstance(action, argparse._SubParsersAction):
            listed = {a.dest: (a.help or "").strip() for a in action._choices_actions}
            missing += [f"{_name(action)} {name}" for name in action.choices
                        if not listed.get(name)]
    assert not missing, f"{path}: no help for {missing}"


@pytest.mark.parametrize("path", sorted(PARSERS))
def test_help_renders(path: str) -> None:
    text = PARSERS[path].format_help()  # a bad %-format in a help string raises here
    assert text.startswith("usage: ")


def test_building_the_parser_starts_no_ray() -> None:
    """In a fresh interpreter (this test session may hold a Ray instance of its own)."""
    import subprocess
    import sys

    code = ("import sys; from drasclr.cli import build_parser; build_parser(); "
            "ray = sys.modules.get('ray'); print(ray is not None and ray.is_initialized())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_pretrain_time_budget_option_sets_the_config() -> None:
    from drasclr.commands.pretrain import config_from_args

    args = PARSERS["drasclr pretrain"].parse_args(
        ["--store", "s", "--out", "o", "--steps", "100000", "--time-budget-minutes", "1.5"])
    cfg = config_from_args(args)
    assert (cfg.time_budget_s, cfg.steps) == (90.0, 100000)
    assert config_from_args(PARSERS["drasclr pretrain"].parse_args(
        ["--store", "s", "--out", "o"])).time_budget_s == 0.0


def test_pretrain_amp_and_batch_mode_options_set_the_config() -> None:
    from drasclr.commands.pretrain import config_from_args

    parse = PARSERS["drasclr pretrain"].parse_args
    assert config_from_args(parse(["--store", "s", "--out", "o", "--amp"])).amp is True
    assert config_from_args(parse(["--store", "s", "--out", "o"])).amp is False
    moco = config_from_args(parse(["--store", "s", "--out", "o", "--model", "moco",
                                   "--conditioning", "none", "--neighbours", "0",
                                   "--batch-mode", "mixed"]))
    assert (moco.model, moco.batch_mode) == ("moco", "mixed")


def test_bench_science_defaults_are_the_configs() -> None:
    from drasclr.bench.science import ScienceConfig

    args = PARSERS["drasclr bench science"].parse_args([])
    assert args.budget_minutes == ScienceConfig.budget_minutes
    assert args.deadline_minutes == ScienceConfig.deadline_minutes == 55.0
    assert args.pretrain_seeds == len(ScienceConfig.seeds)
    assert (args.n, args.seed, args.batch_size) == (
        ScienceConfig.n_subjects, ScienceConfig.seed, ScienceConfig.batch_size)
