"""``optimize_for_inference``: one explicit step that turns a model into a faster copy computing the same function.

    model = create_model("ocrnet_hrnet_w48", weights="converted.pth")   # the reference: plain modules
    fast = ocrformer.optimize_for_inference(model)                       # eval-only copy, same outputs

As timm's ``reparameterize_model`` does for its networks, the transform is opt-in and returns a new module; the
model's own ``forward`` never changes path behind the user's back. What it does, each step checked against the
plain model (``tests/test_optimize.py``):

- **BatchNorm folded into the convolutions** everywhere it follows one: the backbone is traced with ``torch.fx``
  (HRNet's ``FuseUpsample`` kept as a leaf: its target size comes from another branch) and fused by PyTorch's
  ``torch.fx.experimental.optimization.fuse``; where a submodule cannot be traced (input checks, Python control
  flow) its children are, one level down. The OCR head folds its own (``FusedOCRHead``).
- **Channels-last** (NHWC) activations and weights in the backbone: oneDNN's preferred layout on the CPU.
- **The OCR head's fused computation** (``FusedOCRHead``: the 3x3 conv direct or by Winograd -- by default
  F(4x4, 3x3) on large maps, as measured --, both attention steps through ``ocrformer.attend``, so the measured
  backend table applies).
- **Any other head** (the FCN baseline, the context heads of ``ocrformer.context``): every timm ``ConvNormAct``
  with its BatchNorm folded into the conv (``fold_conv_norm_act``; torch.fx's ``fuse`` matches exact module types
  and so skips timm's ``BatchNormAct2d``), then the remaining conv + BatchNorm pairs by torch.fx where the modules
  trace. Their attention runs as the modules run it (through ``ocrformer.attend``).
- ``compile=True`` also wraps the backbone in ``torch.compile``; off by default (see ``benchmarks/README.md``
  for what it measured against its compile time).

The copy is for inference only (eval mode, no gradients, no GT-OCR oracle); its state dict is not the model's.
Optimize again after changing the model's weights.
"""

from __future__ import annotations

import copy

import torch
import torch.fx
from timm.layers import ConvNormAct
from torch import nn
from torch.fx.experimental.optimization import fuse
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .backbones.hrnet import FuseUpsample
from .fused_head import CONV_MODES, FusedOCRHead
from .models.ocrnet import OCRNet
from .ocr import OCRHead

__all__ = ["ChannelsLast", "fold_batch_norms", "fold_conv_norm_act", "optimize_for_inference"]


class _Tracer(torch.fx.Tracer):
    """``FuseUpsample`` stays a call: it is given its target size by its caller."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return isinstance(module, FuseUpsample) or super().is_leaf_module(module, qualified_name)


def fold_batch_norms(module: nn.Module) -> nn.Module:
    """``module`` (eval mode) with every ``BatchNorm2d`` that follows a conv folded into it, by ``torch.fx``
    (``torch.fx.experimental.optimization.fuse``). A module that cannot be traced is left as it is and its
    children are folded instead. Returns the folded module (a ``GraphModule`` where the trace succeeded)."""
    if not list(module.children()) or isinstance(module, FuseUpsample):
        return module
    try:
        graph = _Tracer().trace(module)
    except (torch.fx.proxy.TraceError, TypeError, ValueError, RuntimeError, AttributeError):
        for name, child in module.named_children():
            setattr(module, name, fold_batch_norms(child))
        return module
    return fuse(torch.fx.GraphModule(module, graph), no_trace=True)


def fold_conv_norm_act(module: nn.Module) -> nn.Module:
    """``module`` (eval mode) with every timm ``ConvNormAct`` below it whose norm is a BatchNorm replaced, in
    place, by ``Sequential(conv with the BatchNorm folded in, the norm's dropout and activation[, anti-alias])``:
    the same eval function, one pass fewer. Returns ``module``."""
    for name, child in module.named_children():
        if isinstance(child, ConvNormAct) and isinstance(child.bn, nn.BatchNorm2d) and child.bn.track_running_stats:
            rest = [getattr(child.bn, "drop", None), getattr(child.bn, "act", None), getattr(child, "aa", None)]
            fused = fuse_conv_bn_eval(child.conv, child.bn)
            setattr(module, name, nn.Sequential(fused, *(m for m in rest if m is not None)))
        else:
            fold_conv_norm_act(child)
    return module


class ChannelsLast(nn.Module):
    """Runs ``module`` (its weights converted) on channels-last inputs: oneDNN's preferred layout on the CPU."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor):
        return self.module(x.contiguous(memory_format=torch.channels_last))


def optimize_for_inference(
    model: nn.Module, *, conv: str = "auto", channels_last: bool = True, compile: bool = False
) -> nn.Module:
    """A faster inference copy of an ``OCRNet`` (or of an ``OCRHead``) computing the same function.

    Args:
        model: an ``OCRNet`` with any head (backbone and head are optimized) or an ``OCRHead`` (-> a
            ``FusedOCRHead``). The model itself is not changed.
        conv: the OCR head's 3x3 conv: ``"auto"`` (by the map's size, as measured), ``"direct"`` (oneDNN),
            ``"winograd2"`` or ``"winograd4"`` (see ``ocrformer.fused_head`` and ``benchmarks/README.md``).
        channels_last: run the backbone in channels-last layout.
        compile: also ``torch.compile`` the backbone (compiles on the first call of each input size).

    Returns:
        The optimized copy, in eval mode, without gradients.
    """
    if conv not in CONV_MODES:
        raise ValueError(f"conv must be one of {CONV_MODES}, got {conv!r}")
    if isinstance(model, OCRHead):
        return FusedOCRHead(model, conv=conv).eval()
    if not isinstance(model, OCRNet):
        raise TypeError(f"optimize_for_inference takes an OCRNet or an OCRHead, got {type(model).__name__}")
    optimized = copy.deepcopy(model).eval().requires_grad_(False)
    backbone = fold_batch_norms(optimized.backbone)
    if channels_last:
        backbone = ChannelsLast(backbone)
    optimized.backbone = torch.compile(backbone) if compile else backbone
    if isinstance(optimized.head, OCRHead):
        optimized.head = FusedOCRHead(optimized.head, conv=conv).eval()
    else:  # the FCN baseline and the context heads: every BatchNorm that follows a conv folded into it
        optimized.head = fold_batch_norms(fold_conv_norm_act(optimized.head))
    return optimized
