"""PASCAL-Context's raw annotations -> the label PNGs the loader reads (``ocrformer.data.pascal_context``).

    python -m ocrformer.data.convert_pascal_context --raw-dir trainval \\
        --out VOCdevkit/VOC2010/SegmentationClassContext [--image-sets VOCdevkit/VOC2010/ImageSets]

reads the release's ``trainval/{id}.mat`` (field ``LabelMap``, 459-label ids) and writes ``{id}.png`` with values
0-59; with ``--image-sets`` also ``SegmentationContext/{train,val}.txt`` from VOC2010's ``Main`` lists.
(A module of its own, so that ``python -m`` does not run a module the package has already imported.)
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from .pascal_context import convert_raw_annotations, write_split_lists


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ocrformer.data.convert_pascal_context", description=__doc__)
    parser.add_argument("--raw-dir", type=Path, required=True, help="the release's trainval/ folder of {id}.mat")
    parser.add_argument("--out", type=Path, required=True, help="output folder, e.g. VOC2010/SegmentationClassContext")
    parser.add_argument(
        "--image-sets",
        type=Path,
        help="VOC2010/ImageSets: also write SegmentationContext/{train,val}.txt from Main/{train,val}.txt",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        ids = convert_raw_annotations(args.raw_dir, args.out, progress=not args.quiet)
        counts = write_split_lists(args.image_sets, ids) if args.image_sets is not None else {}
    except (OSError, ValueError) as error:
        raise SystemExit(f"error: {error}") from error
    print(f"wrote {len(ids)} label PNGs to {args.out}")
    for split, count in counts.items():
        print(f"wrote {args.image_sets / 'SegmentationContext' / f'{split}.txt'} ({count} ids)")


if __name__ == "__main__":
    main()
