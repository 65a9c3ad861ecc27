"""SegFix (Yuan et al., ECCV 2020): model-agnostic boundary refinement.

Pure building blocks: ground-truth generation (``segfix_targets``, ``direction_vectors``,
``direction_offsets``) and the label refinement itself (``segfix_refine``).
"""

from .refine import segfix_refine
from .targets import direction_offsets, direction_vectors, segfix_targets

__all__ = [
    "direction_offsets",
    "direction_vectors",
    "segfix_refine",
    "segfix_targets",
]

# Training data: any semantic dataset with these targets added to every sample (ocrformer.segfix.data).
from .data import WithSegFixTargets  # noqa: E402

__all__ += ["WithSegFixTargets"]
