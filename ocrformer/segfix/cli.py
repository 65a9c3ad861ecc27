"""SegFix from the command line: refine label maps that any tool wrote.

    python -m ocrformer.segfix refine --checkpoint segfix_run/last.pth --images leftImg8bit/val/frankfurt \\
        --labels predictions/ --out refined/

Every ``*.png`` in ``--labels`` is one predicted label map; its image is the file of ``--images`` with the same
stem and an image extension (``a.png`` pairs with ``a.jpg``, ``a.png``, ...; stems are compared after Unicode NFC
normalisation, as the datasets pair files). The SegFix network predicts each image's boundary and directions and
``ocrformer.segfix.segfix_refine`` moves the labels of the boundary pixels; the result is written to
``OUT/<stem>.png`` atomically, with the input label PNG's pixel format: palette PNGs keep their palette (and
transparency), 8- and 16-bit greyscale stay 8 and 16 bits, and every value is one of the input's (refinement
only copies labels from pixel to pixel). Pixels equal to ``--ignore-index`` are never copied and never changed.

The checkpoint is a ``SegFixTrainer`` training checkpoint (``last.pth``) or a ``SegFixNet`` state dict. The
network is the one the file records: the preset name comes from the training run's config or, for a state dict,
from the backbone its ``_extra_state`` names; ``--segfix-model`` names it where neither tells.

Failures: a label without its image stops the run before the network is loaded (all such labels listed). A
file that cannot be read, a label of another size than its image or a colour (RGB) label does not stop the
others: every other file is refined, the failures are listed at the end (file and reason), exit status 1.

The same loader and refinement serve ``python -m ocrformer.predict --segfix`` (``load_segfix_model``,
``refine_labels``).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from .._atomic import atomic_write
from ..data._io import IMAGE_EXTENSIONS, check_same_size, nfc, read_image, read_label
from ..data.transforms import normalize_image
from ..engine.checkpoint import load_checkpoint, non_finite_tensors
from ..models import SegFixNet, create_segfix_model, list_segfix_models
from ..models.segfix import FORMAT

__all__ = [
    "load_segfix_model", "main", "pair_labels_with_images", "refine_labels", "segfix_input", "write_label_like",
]

PROG = "python -m ocrformer.segfix"
# The label PNG modes read_label accepts, and the numpy type each is written back with.
_LABEL_DTYPES = {"L": np.uint8, "P": np.uint8, "I;16": np.uint16, "I": np.int32}


# ----------------------------------------------------------------------------------------------- the network
def _describe(state: Mapping) -> str:
    """What a checkpoint that is not SegFix's seems to be, for the error message."""
    config = state.get("config")
    if isinstance(state.get("model"), Mapping) and isinstance(config, Mapping):
        return f"a training checkpoint of model {config.get('model')!r}"
    extra = state.get("_extra_state")
    if isinstance(extra, Mapping):
        return f"a state dict whose _extra_state is {dict(extra)!r}"
    keys = [str(key) for key in list(state)[:3]]
    return f"a dict without SegFix's _extra_state (keys {', '.join(keys)}{', ...' if len(state) > 3 else ''})"


def _preset_from_extra_state(extra: Mapping) -> str | None:
    """The ``segfix_*`` preset whose backbone is the one a SegFixNet state dict records; ``None`` if no preset
    (or more than one) has it."""
    from ..models.registry import segfix_models_for_backbone

    names = segfix_models_for_backbone(str(extra.get("backbone")))
    return names[0] if len(names) == 1 else None


def load_segfix_model(
    path: str | Path, name: str | None = None, *, device: str | torch.device = "cpu", flag: str = "--segfix-model"
) -> SegFixNet:
    """The SegFix network of a ``SegFixTrainer`` checkpoint or a ``SegFixNet`` state dict, in eval mode on
    ``device``.

    Args:
        path: the checkpoint file.
        name: the ``segfix_*`` preset (``list_segfix_models()``); ``None``: the training run's ``config.model``,
            else the preset of the backbone the state dict's ``_extra_state`` records.
        flag: the command-line flag that sets ``name``, named by the error when the name cannot be read.

    The number of directions, the boundary width, ``align_corners`` and the branch width are read from the
    weights, so a network trained with other settings than its preset's loads without them being repeated; a
    training checkpoint's ``model_kwargs`` (its ``boundary_threshold`` included) are applied too.

    Raises ``SystemExit`` naming the file: missing or unreadable, not a SegFix checkpoint, a name that cannot be
    read (naming ``flag``), weights that do not fit the preset, non-finite weights.
    """
    try:
        state = load_checkpoint(path)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"SegFix {error}") from error
    config = state.get("config") if isinstance(state.get("config"), Mapping) else {}
    weights = state["model"] if isinstance(state.get("model"), Mapping) else state
    extra = weights.get("_extra_state")
    if not isinstance(extra, Mapping) or extra.get("format") != FORMAT:
        raise SystemExit(
            f"{path} is not a SegFix checkpoint: expected a SegFixTrainer training checkpoint (last.pth) or a "
            f"SegFixNet state dict (whose _extra_state has format {FORMAT!r}); it is {_describe(state)}"
        )
    kwargs: dict = {}
    if config.get("model") in list_segfix_models():  # the run's own settings (loss settings are harmless)
        kwargs.update(config.get("model_kwargs") or {})
    name = name or (config.get("model") if config.get("model") in list_segfix_models() else None)
    name = name or _preset_from_extra_state(extra)
    if name is None:
        raise SystemExit(
            f"{path}: cannot tell which SegFix model these weights are for (backbone {extra.get('backbone')!r} is "
            f"no preset's); pass {flag} NAME, one of {', '.join(list_segfix_models())}"
        )
    kwargs.update(
        num_directions=extra["num_directions"], boundary_width=extra["boundary_width"],
        align_corners=extra["align_corners"],
    )
    branch = weights.get("boundary_head.conv.conv.weight")
    if isinstance(branch, torch.Tensor):
        kwargs["mid_channels"] = branch.shape[0]
    try:
        model = create_segfix_model(name, weights=weights, **kwargs)
    except (ValueError, RuntimeError) as error:  # another backbone: other keys, shapes or _extra_state
        raise SystemExit(f"{path} does not fit SegFix model {name}: {error}") from error
    bad = non_finite_tensors(model.state_dict())
    if bad:  # NaN weights would move every pixel or none, silently
        raise SystemExit(f"{path}: the SegFix weights hold non-finite values ({', '.join(bad[:5])})")
    return model.to(device).eval()


def segfix_input(image: torch.Tensor) -> torch.Tensor:
    """A uint8 (3, H, W) RGB image -> the (1, 3, H, W) float input SegFix is trained on: ImageNet-normalised RGB,
    as ``SegFixTrainer``'s data (``ocrformer.data.transforms``) feeds it."""
    return normalize_image(image)[None]


@torch.no_grad()
def refine_labels(
    model: SegFixNet,
    image: torch.Tensor,
    labels: torch.Tensor,
    *,
    boundary_threshold: float | None = None,
    offset_scale: float = 2,
    ignore_index: int = 255,
) -> torch.Tensor:
    """Refine one label map with SegFix: ``labels`` (H, W) int, any model's prediction for ``image``, a uint8
    (3, H, W) RGB image. ``boundary_threshold=None``: the model's own (0.5 unless trained otherwise). Returns
    the refined (H, W) int64 labels on the CPU (see ``ocrformer.segfix.segfix_refine``)."""
    device = next(model.parameters()).device
    options = {"offset_scale": offset_scale, "ignore_index": ignore_index}
    if boundary_threshold is not None:
        options["boundary_threshold"] = boundary_threshold
    refined = model.refine(segfix_input(image).to(device), labels.to(device).long()[None], **options)
    return refined[0].cpu()


# ---------------------------------------------------------------------------------------------- the files
def pair_labels_with_images(labels_dir: Path, images_dir: Path) -> list[tuple[Path, Path]]:
    """``[(image, label PNG)]`` for every ``*.png`` of ``labels_dir`` (sorted by name), its image being the file
    of ``images_dir`` with the same stem (NFC-normalised) and an extension of ``IMAGE_EXTENSIONS`` (any case).

    ``SystemExit`` naming the folder when it has no label PNG, every label without an image (and where it was
    looked for), and every label with several images (``a.png`` and ``a.jpg``)."""
    for folder, what in ((labels_dir, "--labels"), (images_dir, "--images")):
        if not folder.is_dir():
            raise SystemExit(f"{what} {folder} is not a folder")
    labels = sorted(p for p in labels_dir.iterdir() if p.suffix.lower() == ".png" and p.is_file())
    if not labels:
        raise SystemExit(f"no label PNGs (*.png) in {labels_dir}")
    images: dict[str, list[Path]] = {}
    for path in sorted(images_dir.iterdir()):
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
            images.setdefault(nfc(path.stem), []).append(path)
    pairs, problems = [], []
    for label in labels:
        found = images.get(nfc(label.stem), [])
        if len(found) == 1:
            pairs.append((found[0], label))
        elif not found:
            problems.append(
                f"  {label}: no image {images_dir / label.stem}.* (expected one of {', '.join(IMAGE_EXTENSIONS)})"
            )
        else:
            problems.append(f"  {label}: several images share its stem: {', '.join(str(p) for p in found)}")
    if problems:
        raise SystemExit(f"{len(problems)} of {len(labels)} label PNGs have no single image:\n" + "\n".join(problems))
    return pairs


def _label_format(path: Path) -> tuple[str, list[int] | None, object]:
    """The PIL mode, palette and transparency of a label PNG that ``read_label`` accepted."""
    with Image.open(path) as image:
        palette = image.getpalette() if image.mode == "P" else None
        return image.mode, palette, image.info.get("transparency")


def write_label_like(path: Path, labels: torch.Tensor, mode: str, palette, transparency) -> Path:
    """Write (H, W) ``labels`` to ``path`` (atomically) as a PNG of PIL ``mode`` with ``palette``/``transparency``
    -- the format the input label had."""
    picture = Image.fromarray(labels.numpy().astype(_LABEL_DTYPES[mode]))
    if mode == "P":
        picture.putpalette(palette)  # an "L" picture becomes "P" with the input's colours
    options = {} if transparency is None else {"transparency": transparency}
    return atomic_write(path, lambda partial: picture.save(partial, format="PNG", **options))


def _refine_file(model, image_path: Path, label_path: Path, out: Path, args: argparse.Namespace) -> tuple[int, int]:
    """Refine one pair and write it; returns (pixels changed, pixels). ``ValueError`` names the file."""
    image = read_image(image_path)
    labels = read_label(label_path)
    check_same_size(image, labels, image_path, label_path)
    mode, palette, transparency = _label_format(label_path)
    refined = refine_labels(
        model, image, labels, boundary_threshold=args.boundary_threshold, offset_scale=args.offset_scale,
        ignore_index=args.ignore_index,
    )
    write_label_like(out, refined, mode, palette, transparency)
    return int((refined != labels).sum()), labels.numel()


# ------------------------------------------------------------------------------------------------ command
def _threshold(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1], got {text!r}")
    return value


def _scale(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from ..predict import _device  # the --device flag of python -m ocrformer.predict (which imports this module)

    paragraphs = __doc__.split("\n\n")
    parser = argparse.ArgumentParser(prog=PROG, description=paragraphs[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    refine = commands.add_parser(
        "refine", help="refine the label PNGs another tool wrote", description="\n\n".join(paragraphs[:-1]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    refine.add_argument("--checkpoint", required=True, type=Path, help="SegFixTrainer last.pth or SegFixNet weights")
    refine.add_argument("--images", required=True, type=Path, help="folder of the images")
    refine.add_argument("--labels", required=True, type=Path, help="folder of the predicted label PNGs")
    refine.add_argument("--out", required=True, type=Path, help="output folder (OUT/<stem>.png)")
    refine.add_argument("--segfix-model", choices=list_segfix_models(), metavar="NAME",
                        help="SegFix preset (default: read from the checkpoint)")
    refine.add_argument("--boundary-threshold", type=_threshold, metavar="P",
                        help="move pixels whose boundary probability is above P (default: the model's, 0.5)")
    refine.add_argument("--offset-scale", type=_scale, default=2.0, metavar="S",
                        help="step length in pixels per direction step (default: 2, upstream's)")
    refine.add_argument("--ignore-index", type=int, default=255, help="void label: never moved (default: 255)")
    refine.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", type=_device,
                        help="cpu, cuda or cuda:N (default: cuda if available)")
    return parser


def main(argv: list[str] | None = None) -> None:
    """``python -m ocrformer.segfix refine ...`` (see the module docstring)."""
    args = build_parser().parse_args(argv)
    pairs = pair_labels_with_images(args.labels, args.images)
    if args.out.resolve() == args.labels.resolve():
        raise SystemExit(f"--out {args.out} is the --labels folder: choose another, the predictions would be replaced")
    model = load_segfix_model(args.checkpoint, args.segfix_model, device=args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    changed = total = 0
    failures: list[tuple[Path, str]] = []
    for image_path, label_path in tqdm(pairs, desc="segfix", unit="image"):
        try:
            moved, pixels = _refine_file(model, image_path, label_path, args.out / f"{label_path.stem}.png", args)
        except ValueError as error:  # unreadable file, another size, a colour label: named by the readers
            failures.append((label_path, str(error)))
        except (RuntimeError, OSError) as error:  # out of memory, a full disk
            failures.append((label_path, f"refining or writing failed: {type(error).__name__}: {error}"))
        else:
            changed, total = changed + moved, total + pixels
            continue
        tqdm.write(f"{label_path}: FAILED: {failures[-1][1]}", file=sys.stderr)
    done = len(pairs) - len(failures)
    share = f" ({100 * changed / total:.3f}%)" if total else ""
    print(f"SegFix refined {done} of {len(pairs)} label maps into {args.out}: {changed} of {total} pixels "
          f"changed{share}")
    if failures:
        listed = "\n".join(f"  {path}: {reason}" for path, reason in failures)
        raise SystemExit(f"{len(failures)} of {len(pairs)} label maps failed; the others were written:\n{listed}")
