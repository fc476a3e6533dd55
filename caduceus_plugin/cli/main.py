"""``caduceus`` command line: one module per command in this package, each with ``register(subparsers)``.

    caduceus demo [--out DIR] [--weights DIR]           the main job on the shipped real demo input
    caduceus predict | score-variants | logits | export-kipoi | train | bench | pretrain | pretrain-eval | info | list

(see ``caduceus COMMAND --help``). Errors print one line (``error: ...``) and exit with status 2; no traceback.
Command modules import only the standard library at top level so that ``caduceus --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

#: Command modules of this package, in the order ``caduceus --help`` lists them.
COMMANDS = ("demo", "predict", "score_variants", "logits", "export_kipoi", "train", "bench", "pretrain", "info")


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, like every other error (``error: ...``, exit status 2); sub-parsers inherit it."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {self.prog}: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="caduceus", description="Caduceus DNA language models in plain PyTorch.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"caduceus_plugin.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from caduceus_plugin.errors import CaduceusError, JobInterrupted

    args = build_parser().parse_args(argv)
    previous = _on_signals(JobInterrupted)
    try:
        from caduceus_plugin import settings

        settings.validate_all()  # a bad CADUCEUS_* value is one line before any work
        return int(args.func(args))
    except CaduceusError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (JobInterrupted, KeyboardInterrupt) as err:
        signum = err.args[0] if isinstance(err, JobInterrupted) and err.args else signal.SIGINT
        print(f"error: interrupted ({signal.Signals(signum).name}); no output was written (predict, score-variants "
              "and logits keep their finished batches in OUT.parts/: rerun the same command with --resume)",
              file=sys.stderr)
        return 128 + int(signum)
    except BrokenPipeError:  # output piped into e.g. `head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _on_signals(exc: type[BaseException]) -> dict[int, Any]:
    """Ctrl-C (SIGINT) and SIGTERM (a scheduler's stop) raise ``exc(signum)``: not KeyboardInterrupt, which
    Lightning answers with its own message and exit 1 (Lightning calls a SIGTERM handler set before it starts).
    Returns the previous handlers; none are set outside the main thread."""

    def handler(signum: int, frame: Any) -> None:
        raise exc(signum)

    previous = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, handler)
    except ValueError:
        pass
    return previous


if __name__ == "__main__":
    sys.exit(main())
