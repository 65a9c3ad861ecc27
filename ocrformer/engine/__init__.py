"""Training and evaluation: ``Trainer``, ``TrainConfig``, distributed set-up, atomic checkpoints; ``SegFixTrainer``."""

from .checkpoint import atomic_save, load_checkpoint
from .config import TrainConfig, build_datasets
from .distributed import DistributedContext, setup_distributed, teardown_distributed
from .segfix import SegFixTrainer
from .trainer import Trainer

__all__ = [
    "DistributedContext",
    "SegFixTrainer",
    "TrainConfig",
    "Trainer",
    "atomic_save",
    "build_datasets",
    "load_checkpoint",
    "setup_distributed",
    "teardown_distributed",
]
