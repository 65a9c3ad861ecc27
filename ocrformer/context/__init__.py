"""The context modules the OCR paper compares OCR with, and the head that makes each a segmentation model.

    multi_scale.py   PyramidPooling (PSPNet's PPM), ASPP (DeepLabv3)
    relational.py    DualAttention (DANet: PositionAttention + ChannelAttention), RecurrentCrissCross (CCNet:
                     CrissCrossAttention), BaseObjectContext (OCNet: SelfAttentionBlock),
                     InterlacedSparseSelfAttention (ISA), DoubleAttention (A2-Net)
    head.py          ContextHead (aux branch + context module + classifier), CONTEXT_MODULES, build_context
    published.py     the OCR paper's complexity table, with what it is checked against

Each module maps (B, Cin, H, W) -> (B, C, H, W) with C its ``channels`` argument (``out_channels``), so a
small model stays small; its docstring says which upstream code each detail was checked against and which
details are choices. ``OCRNet(head=key)`` and ``create_model("<prefix>_<backbone>")`` build them by name
(``ocrformer.models.HEAD_PREFIXES``).
"""

from .head import CONTEXT_MODULES, ContextHead, build_context, region_branch
from .multi_scale import ASPP, PyramidPooling
from .published import OCR_PAPER_COMPLEXITY
from .relational import (
    BaseObjectContext,
    ChannelAttention,
    CrissCrossAttention,
    DoubleAttention,
    DualAttention,
    InterlacedSparseSelfAttention,
    PositionAttention,
    RecurrentCrissCross,
    SelfAttentionBlock,
)

__all__ = [
    "ASPP",
    "CONTEXT_MODULES",
    "OCR_PAPER_COMPLEXITY",
    "BaseObjectContext",
    "ChannelAttention",
    "ContextHead",
    "CrissCrossAttention",
    "DoubleAttention",
    "DualAttention",
    "InterlacedSparseSelfAttention",
    "PositionAttention",
    "PyramidPooling",
    "RecurrentCrissCross",
    "SelfAttentionBlock",
    "build_context",
    "region_branch",
]
