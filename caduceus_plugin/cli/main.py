"""``caduceus`` command line: one module per command in this package, each with ``register(subparsers)``.

    caduceus demo [--out DIR] [--weights DIR]           the main job on the shipped real demo input
    caduceus predict | score-variants | export-kipoi | train | bench | pretrain | pretrain-eval | info | list

(see ``caduceus COMMAND --help``). Errors print one line (``error: ...``) and exit with status 2; no traceback.
Command modules import only the standard library at top level so that ``caduceus --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

#: Command modules of this package, in the order ``caduceus --help`` lists them.
COMMANDS = ("demo", "predict", "score_variants", "export_kipoi", "train", "bench", "pretrain", "info")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="caduceus", description="Caduceus DNA language models in plain PyTorch.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"caduceus_plugin.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from caduceus_plugin.errors import CaduceusError

    args = build_parser().parse_args(argv)
    try:
        from caduceus_plugin import settings

        settings.validate_all()  # a bad CADUCEUS_* value is one line before any work
        return int(args.func(args))
    except CaduceusError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into e.g. `head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
