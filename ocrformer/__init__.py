"""ocrformer: OCR (object-contextual representations, OCRNet) as Transformer cross-attention.

Public API:
    attend, available_backends, attention_backend   one attention function, several kernels (attention.py)
    OCRDecoder, OCREncoder, OCRHead                  the paper's Section 3.3 view of the OCR head (ocr.py)
    optimize_for_inference, FusedOCRHead             an explicit, faster inference copy (optimize.py, fused_head.py)
    OCRNet, create_model, list_models                segmentation models on timm backbones (models/)
    ContextHead, HEAD_PREFIXES                       the context heads OCR is compared with (context/)
    PanopticFPN, create_panoptic_model, combine_panoptic
                                                     Panoptic-FPN (+ OCR) on torchvision's Mask R-CNN
    ocrformer.convert.convert_checkpoint             HRNet-OCR / mmsegmentation checkpoints -> ocrformer
    ocrformer.data, ocrformer.evaluation, ocrformer.engine, ocrformer.inference
                                                     datasets, metrics, training, test-time inference
"""

from .attention import attend, attention_backend, available_backends, choose_backend
from .context import ContextHead
from .fused_head import FusedOCRHead
from .models import (
    HEAD_PREFIXES,
    OCRNet,
    PanopticFPN,
    combine_panoptic,
    create_model,
    create_panoptic_model,
    list_models,
)
from .ocr import DecoderOutput, OCRDecoder, OCRDecoderLayer, OCREncoder, OCRHead
from .optimize import optimize_for_inference

__version__ = "0.1.0"

__all__ = [
    "HEAD_PREFIXES",
    "ContextHead",
    "DecoderOutput",
    "FusedOCRHead",
    "OCRDecoder",
    "OCRDecoderLayer",
    "OCREncoder",
    "OCRHead",
    "OCRNet",
    "PanopticFPN",
    "attend",
    "attention_backend",
    "available_backends",
    "choose_backend",
    "combine_panoptic",
    "create_model",
    "create_panoptic_model",
    "list_models",
    "optimize_for_inference",
]
