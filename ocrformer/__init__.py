"""ocrformer: OCR (object-contextual representations, OCRNet) as Transformer cross-attention.

Public API:
    attend, available_backends, attention_backend   -- one attention function, several kernels
    OCRDecoder, OCREncoder, OCRHead                  -- the paper's Section 3.3 view of the OCR head
    convert.convert_checkpoint                       -- HRNet-OCR / mmsegmentation checkpoints -> ocrformer
"""

from .attention import attend, attention_backend, available_backends, choose_backend
from .ocr import DecoderOutput, OCRDecoder, OCREncoder, OCRHead

__version__ = "0.1.0"

__all__ = [
    "DecoderOutput",
    "OCRDecoder",
    "OCREncoder",
    "OCRHead",
    "attend",
    "attention_backend",
    "available_backends",
    "choose_backend",
]
