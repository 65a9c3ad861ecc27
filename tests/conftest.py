"""Test-wide settings and fixtures. Shared helpers live in ``tests/helpers/`` (imported from there, not from here)."""

import os
import shutil

import pytest
import torch

# One intra-op thread for the tests and the processes they start: the tensors here are tiny, and on a shared
# or busy machine two spinning OpenMP threads per process make tiny ops an order of magnitude slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


@pytest.fixture
def rng():
    return torch.Generator().manual_seed(1234)


# A tiny COCO panoptic tree in the real layout (3 train + 1 val images), generated once per session; tests that
# edit it get their own copy (``tiny_coco``).
TINY_COCO = {"num_train": 3, "num_val": 1, "sizes": ((48, 64),), "progress": False}


@pytest.fixture(scope="session")
def tiny_coco_source(tmp_path_factory):
    from ocrformer.data import write_synthetic_coco_panoptic

    return write_synthetic_coco_panoptic(tmp_path_factory.mktemp("tiny_coco") / "coco", **TINY_COCO)


@pytest.fixture
def tiny_coco(tiny_coco_source, tmp_path):
    return shutil.copytree(tiny_coco_source, tmp_path / "coco")
