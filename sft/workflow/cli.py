"""Command line of sft: ``sft figures [--quick] [--only NAME ...] [--out DIR] [--cache DIR] [--list]``;
``sft --version`` prints the version.

Also ``python -m sft figures ...``. Ctrl-C stops after the current piece (it is cached) with exit
status 130; a second Ctrl-C aborts at once. See :mod:`sft.workflow.figures` for the registry and the cache.
"""
from __future__ import annotations

import argparse
import sys

from . import figures as _figures
from .. import __version__
__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sft",
                                     description="Statistical field theory of wide networks.")
    parser.add_argument("--version", action="version", version=f"sft {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    fig = commands.add_parser("figures", help="compute (cached) and plot the figures of sims/fig_*.py",
                              description="Compute (cached) and plot the figures of sims/fig_*.py.")
    fig.add_argument("--quick", action="store_true", help="CI-sized parameters (seconds, not minutes)")
    fig.add_argument("--only", nargs="+", action="extend", metavar="NAME", default=[],
                     help="build only these figures (see --list)")
    fig.add_argument("--out", default=None, metavar="DIR",
                     help="output folder (default: <repo>/figures; <repo>/figures/quick with --quick)")
    fig.add_argument("--cache", default=None, metavar="DIR",
                     help="cache folder (default: <repo>/.cache/sft)")
    fig.add_argument("--sims", default=None, metavar="DIR",
                     help="folder of the fig_*.py scripts (default: <repo>/sims)")
    fig.add_argument("--list", action="store_true", help="list the figures and exit")
    return parser


def main(argv=None) -> int:
    """Run the command line; returns the exit status (130 after Ctrl-C)."""
    parser = _parser()
    args = parser.parse_args(argv)
    with _figures.stop_on_interrupt():  # from here on Ctrl-C stops between pieces: exit 130
        try:
            return _figures_command(parser, args)
        except _figures.Interrupted as err:
            print(f"sft figures: {err}", file=sys.stderr)
            return 130


def _figures_command(parser, args) -> int:
    try:
        registry = _figures.discover(args.sims)
        chosen = _figures.select(registry, args.only)
    except ValueError as err:
        parser.exit(2, f"sft figures: error: {err}\n")
    if args.list:
        for fig in chosen:
            print(f"{fig.name:24s} {fig.description}")
        return 0
    mode = "quick" if args.quick else "full"
    for fig in chosen:
        _figures.build(fig, mode, args.out, args.cache)
    return 0
