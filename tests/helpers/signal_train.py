"""Driven by tests/test_trainer.py: a long run that the test stops with SIGTERM."""

import sys

from ocrformer.engine import Trainer
from tests.helpers.toy import ToySegmentation, toy_config

if __name__ == "__main__":
    config = toy_config(sys.argv[1], iterations=100_000, checkpoint_every=100_000)
    summary = Trainer(config, ToySegmentation()).fit()
    print(f"summary: {summary}")
    sys.exit(3 if summary["interrupted"] else 0)
