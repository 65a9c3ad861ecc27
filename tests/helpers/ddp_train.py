"""Driven by tests/test_trainer.py under torchrun: a few distributed iterations on the toy data."""

import sys

from ocrformer.engine import Trainer, teardown_distributed
from tests.helpers.toy import ToySegmentation, toy_config

if __name__ == "__main__":
    config = toy_config(sys.argv[1], iterations=3, checkpoint_every=2)
    trainer = Trainer(config, ToySegmentation(), ToySegmentation(num_images=4, seed=9, augment=False))
    summary = trainer.fit()
    print(f"rank {trainer.context.rank} of {trainer.context.world_size}: {summary}")
    print(f"rank {trainer.context.rank} holds {type(trainer.model).__name__} after fit")
    teardown_distributed()
