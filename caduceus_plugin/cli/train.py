"""``caduceus train [-m] key=value ...``: fine-tune through gReLU + Lightning (Hydra; see
:mod:`caduceus_plugin.hosts.grelu.train`)."""

from __future__ import annotations

import argparse
import subprocess
import sys


def _run(args: argparse.Namespace) -> int:
    # A child process running the Hydra app as a module, so that Lightning's DDP launcher can start the same
    # command again on every rank (``python -m caduceus_plugin.hosts.grelu.train ...``).
    return subprocess.call([sys.executable, "-m", "caduceus_plugin.hosts.grelu.train", *args.overrides])


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="fine-tune a registered model on a real task (Hydra overrides: model=, data=, task=, trainer=)",
        description="Fine-tune through gReLU's LightningModel and Lightning. Arguments are Hydra overrides, e.g. "
        "`caduceus train model=caduceus_ps data=oct4_mafk trainer.max_epochs=2`; `-m model=caduceus_ps,caduceus_ph` "
        "runs a multirun; `--cfg job` prints the composed config; `--help` after `train --` shows Hydra's help.",
    )
    p.add_argument("overrides", nargs=argparse.REMAINDER, help="Hydra overrides and flags")
    p.set_defaults(func=_run)
