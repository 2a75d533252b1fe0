"""The command line: ``python -m effnet_lab <command> ...`` (``--help`` lists the commands).

Each command lives in the module that does the work: the module defines
``add_parser(subparsers)``, which registers the command's parser with
``set_defaults(run=main)``, and ``main(args)``, which carries it out. Adding a command is
one line in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .train import NonFiniteLossError

# command -> module that registers it (imported only when the command line starts)
COMMANDS = {
    "train": "effnet_lab.train",
    "sweep": "effnet_lab.sweep",
    "plots": "effnet_lab.plots",
    "nas": "effnet_lab.nas",
    "reproduce": "effnet_lab.reproduce",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m effnet_lab",
        description="effnet_lab's commands; 'python -m effnet_lab <command> --help' describes each.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="command")
    for module_name in COMMANDS.values():
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = ["python", "-m", "effnet_lab", *argv]
    try:
        return args.run(args) or 0
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to resume from the last finished epoch", file=sys.stderr)
        return 130
    except (ValueError, TypeError, FileNotFoundError, NonFiniteLossError) as error:
        # Bad input (our checks raise ValueError/TypeError naming the problem): one line, no traceback.
        parser.exit(2, f"{parser.prog} {args.command}: error: {error}\n")


if __name__ == "__main__":
    sys.exit(main())
