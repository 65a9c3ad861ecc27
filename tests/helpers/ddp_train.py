"""Driven by tests/test_trainer.py under torchrun: a few distributed iterations on the toy data.

``python -m tests.helpers.ddp_train OUT [segfix]``: the semantic ``Trainer`` (OCRNet), or ``SegFixTrainer``.
"""

import json
import sys

from ocrformer.engine import SegFixTrainer, Trainer, teardown_distributed
from tests.helpers.toy import ToySegmentation, toy_config

if __name__ == "__main__":
    segfix = sys.argv[2:] == ["segfix"]
    model = {"model": "segfix_tiny", "model_kwargs": {"boundary_width": 2}} if segfix else {}
    config = toy_config(sys.argv[1], iterations=3, checkpoint_every=2, **model)
    trainer_class = SegFixTrainer if segfix else Trainer
    trainer = trainer_class(config, ToySegmentation(), ToySegmentation(num_images=4, seed=9, augment=False))
    summary = trainer.fit()
    print(f"rank {trainer.context.rank} of {trainer.context.world_size}: {summary}")
    print(f"rank {trainer.context.rank} holds {type(trainer.model).__name__} after fit")
    evaluation = {k: v for k, v in trainer.last_evaluation.items() if isinstance(v, float)}
    print(f"rank {trainer.context.rank} evaluation {json.dumps(evaluation, sort_keys=True)}")
    teardown_distributed()
