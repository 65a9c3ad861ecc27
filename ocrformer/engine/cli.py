"""The command-line flags every training experiment shares, and the ``TrainConfig`` fields they set.

parser = argparse.ArgumentParser()
...                                   # the experiment's own flags (data, model, schedule)
add_run_arguments(parser)             # --amp --device --workers --seed --eval-every --checkpoint-every
                                      # --resume --eval-only --checkpoint
args = parser.parse_args()
check_run_arguments(parser, args)
TrainConfig(..., **run_settings(args, output_dir))
sys.exit(run_on_every_rank(args, run))  # run(args, context) -> exit status, inside torchrun's group
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from .distributed import DistributedContext, setup_distributed, teardown_distributed

__all__ = ["add_run_arguments", "check_run_arguments", "run_on_every_rank", "run_settings"]


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=0, help="0: evaluate at the end")
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--resume", default="auto", help="'auto' (continue a run found in --out), a path, or 'none'")
    parser.add_argument("--eval-only", action="store_true", help="evaluate --checkpoint without training")
    parser.add_argument("--checkpoint", help="for --eval-only: a checkpoint written by this script")


def check_run_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit with a usage error naming the flag when the shared flags do not fit together."""
    if args.eval_only and not args.checkpoint:
        parser.error("--eval-only needs --checkpoint")


def run_settings(args: argparse.Namespace, output_dir: str | Path) -> dict:
    """The ``TrainConfig`` keyword arguments the shared flags decide, for a run writing to ``output_dir``."""
    return {
        "amp": args.amp,
        "device": args.device,
        "workers": args.workers,
        "seed": args.seed,
        "eval_every": args.eval_every,
        "checkpoint_every": args.checkpoint_every,
        "output_dir": str(output_dir),
        "resume": None if args.resume == "none" else args.resume,
    }


def run_on_every_rank(args: argparse.Namespace, run: Callable[[argparse.Namespace, DistributedContext], int]) -> int:
    """Join ``torchrun``'s process group if launched by it (``--device``), call ``run(args, context)`` and
    leave the group; returns ``run``'s exit status. A single process just runs."""
    context = setup_distributed(args.device)
    status = run(args, context)
    teardown_distributed()  # every rank gets here, after a stop signal too (ranks agree on stopping)
    return status
