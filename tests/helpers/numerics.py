"""What the numerical tests share: the relative error they bound, the classic head as a reference, the GPU mark.
(The first two are the benchmarks' own, so that tests and benchmarks check parity the same way.)"""

from __future__ import annotations

import pytest
import torch

from benchmarks._common import relative_error
from benchmarks.classic_ocr import classic_and_ocrformer, head_state_dict

__all__ = ["classic_and_ocrformer", "cuda", "head_state_dict", "relative_error"]


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
