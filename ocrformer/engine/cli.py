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

__all__ = [
    "add_run_arguments",
    "check_run_arguments",
    "configs_or_usage_error",
    "eval_only_folder",
    "run_on_every_rank",
    "run_settings",
]


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=0, help="0: evaluate at the end")
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--resume", default="auto", help="'auto' (continue a run found in --out), a path, or 'none'")
    parser.add_argument(
        "--eval-only", action="store_true", help="evaluate --checkpoint, no training (reports: <out>/eval_<run>_<name>)"
    )
    parser.add_argument(
        "--checkpoint", help="for --eval-only: a checkpoint of this script (semantic: also a model's weights file)"
    )


def check_run_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit with a usage error naming the flag when the shared flags do not fit together."""
    if args.eval_only and not args.checkpoint:
        parser.error("--eval-only needs --checkpoint")
    for flag, minimum in (("seed", 0), ("workers", 0), ("eval_every", 0), ("checkpoint_every", 1)):
        if getattr(args, flag) < minimum:
            parser.error(f"--{flag.replace('_', '-')} must be >= {minimum}, got {getattr(args, flag)}")


# TrainConfig fields whose flag is not the field's name with dashes.
_FLAGS = {"crop_size": "--crop", "warmup_iters": "--warmup"}


def configs_or_usage_error(parser: argparse.ArgumentParser, build: Callable[[], dict]) -> dict:
    """``build()`` (the run's ``TrainConfig``s), turning a setting ``TrainConfig`` refuses into a usage error
    that names the flag (``--lr: lr must be a finite number, got nan``) before anything runs."""
    try:
        return build()
    except ValueError as error:
        field = str(error).split(" ", 1)[0].split("[", 1)[0]
        parser.error(f"{_FLAGS.get(field, '--' + field.replace('_', '-'))}: {error}")


def eval_only_folder(args: argparse.Namespace) -> Path:
    """Where ``--eval-only`` writes: a folder of its own inside ``--out``, named after the checkpoint (e.g.
    ``<out>/eval_ocr_last`` for ``<out>/ocr/last.pth``), so that an evaluation never overwrites the reports of
    the training run it evaluates (``results.*``, the plots, a panoptic run's ``eval/`` predictions)."""
    checkpoint = Path(args.checkpoint)
    return Path(args.out) / f"eval_{checkpoint.parent.name}_{checkpoint.stem}"


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
