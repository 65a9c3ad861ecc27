"""The OCR paper's complexity table (Yuan, Chen & Wang, "Object-Contextual Representations for Semantic
Segmentation", ECCV 2020, arXiv 1909.11065, Table 3 "Complexity comparison"): each context module on one
2048 x 128 x 128 feature map, module width 512 (ASPP 256), inference on one GPU.

Provenance, honestly: these values were *not* read from the paper here. The table's text is in none of the
corpora searched for this library (its pages are stored only as abstracts; openseg.pytorch's README and
MODEL_ZOO, mmsegmentation's OCRNet README and the code corpora hold no copy). The values are the ones recalled
in the task that asked for this library, and they are kept because independent evidence supports them:

- the GFLOPs column agrees with FLOPs counted here (``torch.utils.flop_counter``, 2 FLOPs per multiply-add) for
  PPM (618.6), ASPP (491.8), OCR (340.4), and -- only in their full heads -- DANet (1110.2) and CCNet (804.2),
  to within 0.1%; a recollection would not match five four-digit counts by chance;
- a summary of the paper states that OCR needs about 1/2 of PPM's and 3/10 of DANet's FLOPs (340/619, 340/1110).

What the parameter column does and does not reproduce is tested in ``tests/test_context_heads.py`` and said in
each module's docstring: PPM, ASPP and A2-Net (with the choices ``DoubleAttention`` documents) match to the
table's 0.1M precision; OCNet's self-attention and OCR are 0.12M above the table, and they are exactly what
openseg's own complexity scripts (``base_oc_block.py``/``spatial_ocr_block.py`` ``__main__``) count for the same
layouts, so the table counted something differently; DANet's and CCNet's 10.6M fit neither their attention
cores (9.77M) nor their full heads (23.9M), while the table's FLOPs are the full heads'.
"""

from __future__ import annotations

__all__ = ["OCR_PAPER_COMPLEXITY"]

# Table row -> (parameters in millions, GFLOPs) at 2048 x 128 x 128 (memory and time depend on the GPU).
OCR_PAPER_COMPLEXITY: dict[str, tuple[float, float]] = {
    "ppm": (23.1, 619),
    "aspp": (15.5, 492),
    "danet": (10.6, 1110),
    "cc": (10.6, 804),  # "CC-Attention"
    "self_attention": (10.5, 619),
    "double_attention": (10.2, 338),
    "ocr": (10.5, 340),
}
