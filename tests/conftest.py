import os

import pytest
import torch

# One intra-op thread for the tests and the processes they start: the tensors here are tiny, and on a shared
# or busy machine two spinning OpenMP threads per process make tiny ops an order of magnitude slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)

from benchmarks.classic_ocr import ClassicOCRHead, randomize_  # noqa: E402 - after the thread settings
from ocrformer import OCRHead  # noqa: E402
from ocrformer.convert import convert_checkpoint  # noqa: E402


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max |expected| (the scale of the whole tensor, so near-zero entries do
    not blow the ratio up)."""
    scale = expected.abs().max().clamp_min(torch.finfo(expected.dtype).tiny)
    return ((actual - expected).abs().max() / scale).item()


def head_state_dict(converted: dict) -> dict:
    """The ``head.`` part of a converted checkpoint, with the prefix removed."""
    return {k.removeprefix("head."): v for k, v in converted.items() if k.startswith("head.")}


def classic_and_ocrformer(in_channels, num_classes, *, dtype=torch.float32, seed=0, **kwargs):
    """A randomised ClassicOCRHead and an OCRHead loaded from it through convert_checkpoint (strict)."""
    backend = kwargs.pop("backend", "auto")
    classic = randomize_(ClassicOCRHead(in_channels, num_classes, **kwargs), seed).to(dtype)
    head = OCRHead(in_channels, num_classes, backend=backend, **kwargs).to(dtype)
    head.load_state_dict(head_state_dict(convert_checkpoint(classic.state_dict())), strict=True)
    return classic, head


@pytest.fixture
def rng():
    return torch.Generator().manual_seed(1234)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
