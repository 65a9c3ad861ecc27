"""Learning-rate schedules, from the config: ``"poly"`` (OCRNet) or ``"step"`` with linear warm-up (Mask R-CNN /
Panoptic-FPN). Both are stock ``torch.optim.lr_scheduler`` objects, stepped once per iteration, so their state
is saved and restored with the checkpoint."""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import ChainedScheduler, LinearLR, LRScheduler, MultiStepLR, PolynomialLR

__all__ = ["SCHEDULES", "build_scheduler"]

SCHEDULES = ("poly", "step")


def build_scheduler(optimizer: torch.optim.Optimizer, config) -> LRScheduler:
    """``config``: a ``TrainConfig`` (``lr_schedule``, ``iterations``, ``poly_power``, ``lr_steps``, ``lr_gamma``,
    ``warmup_iters``, ``warmup_factor``).

    - ``"poly"``: lr * (1 - iter / iterations) ** poly_power.
    - ``"step"``: lr * lr_gamma ** (number of ``lr_steps`` passed), times a linear ramp from ``warmup_factor``
      to 1 over the first ``warmup_iters`` iterations (detectron2's schedule for Panoptic-FPN).
    """
    if config.lr_schedule == "poly":
        if config.warmup_iters:
            raise ValueError("warmup_iters is only supported with lr_schedule='step'")
        return PolynomialLR(optimizer, total_iters=config.iterations, power=config.poly_power)
    steps = MultiStepLR(optimizer, milestones=list(config.lr_steps), gamma=config.lr_gamma)
    if not config.warmup_iters:
        return steps
    warmup = LinearLR(optimizer, start_factor=config.warmup_factor, total_iters=config.warmup_iters)
    return ChainedScheduler([warmup, steps], optimizer=optimizer)
