"""``dcnviz <command>`` (the same as ``python -m dcnviz <command>``): train, evaluate, download, inspect, explain,
paper, app.

Each command lives in ``dcnviz/commands/<name>.py`` with ``register(subparsers)``, which adds its
parser and sets ``func`` to a ``run(args) -> int``. ``app`` serves the Streamlit app and passes its
remaining ``--section.option`` arguments through to Streamlit (:mod:`dcnviz.commands.app`). Progress
goes to stderr; machine-readable results go to stdout (for ``--json`` / train: the last stdout line is
one JSON object). Expected failures (:class:`~dcnviz.errors.DcnvizError`) print ``error: <message>``
to stderr and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from dcnviz import __version__
from dcnviz.errors import DcnvizError

COMMANDS = ("train", "evaluate", "download", "inspect", "explain", "paper", "app")
DESCRIPTION = (
    "dcnviz: see which feature crosses a DCN-V2 model learned and how low-rank its cross layers are. "
    "`dcnviz COMMAND` is the same as `python -m dcnviz COMMAND`; `COMMAND --help` tells each one's options."
)


def build_parser() -> argparse.ArgumentParser:
    prog = "dcnviz" if Path(sys.argv[0]).name == "dcnviz" else "python -m dcnviz"  # the console script or -m
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"dcnviz {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"dcnviz.commands.{name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "app":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "app":
        args.streamlit_args = extra  # Streamlit's own options, checked by dcnviz.commands.app
    args.argv = list(argv) if argv is not None else sys.argv[1:]  # the command line, as recorded in model files
    try:
        return int(args.func(args) or 0)
    except DcnvizError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
