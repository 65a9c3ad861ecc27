"""What the numerical tests share: the relative error they bound, the classic head as a reference, the GPU mark."""

from __future__ import annotations

import pytest
import torch

from benchmarks.classic_ocr import ClassicOCRHead, randomize_
from ocrformer import OCRHead
from ocrformer.convert import convert_checkpoint

__all__ = ["classic_and_ocrformer", "cuda", "head_state_dict", "relative_error"]


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


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
