"""Panoptic quality (PQ = SQ x RQ) with the official COCO panoptic evaluator, and predictions in its format.

``panoptic_quality`` runs ``pq_compute`` of panopticapi (the ``panopticapi-lite`` package carries the official
code unchanged) on files: a ground-truth JSON + PNG folder and a prediction JSON + PNG folder in the COCO
panoptic format. Nothing is re-implemented here, so the numbers are the ones the COCO tools give for the same
files, and the written predictions can be handed to any other tool.

``PanopticEvaluator`` collects a model's per-image outputs, writes them in that format (PNG segment id =
R + 256 G + 256^2 B, JSON ``annotations`` with ``segments_info``), gathers them from every rank and calls
``panoptic_quality`` on rank 0.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image

from .._atomic import atomic_write_text

__all__ = ["PanopticEvaluator", "panoptic_quality", "summarize_pq"]


def panoptic_quality(
    gt_json: str | Path,
    gt_folder: str | Path,
    pred_json: str | Path,
    pred_folder: str | Path,
    *,
    verbose: bool = False,
) -> dict:
    """PQ, SQ, RQ of the predictions against the ground truth, by panopticapi's ``pq_compute``.

    Returns panopticapi's structure, fractions in [0, 1]: ``{"All": {"pq", "sq", "rq", "n"}, "Things": ...,
    "Stuff": ..., "per_class": {category_id: {"pq", "sq", "rq"}}}``. A category counts in an average (``n``)
    when it occurs in the ground truth or the predictions. ``verbose`` keeps panopticapi's own printout.
    """
    from panopticapi.evaluation import pq_compute

    for path, what in ((gt_json, "gt_json"), (pred_json, "pred_json")):
        if not Path(path).is_file():
            raise FileNotFoundError(f"{what} {str(path)!r} does not exist (expected a COCO panoptic JSON file)")
    for path, what in ((gt_folder, "gt_folder"), (pred_folder, "pred_folder")):
        if not Path(path).is_dir():
            raise FileNotFoundError(f"{what} {str(path)!r} does not exist (expected the folder of panoptic PNGs)")
    categories = json.loads(Path(gt_json).read_text())["categories"]
    for name, thing in (("Things", True), ("Stuff", False)):
        if not any(bool(c.get("isthing")) == thing for c in categories):
            raise ValueError(f"{gt_json} has no {name.lower()} categories; PQ needs both things and stuff")
    output = io.StringIO()
    with contextlib.redirect_stdout(output) if not verbose else contextlib.nullcontext():
        # panopticapi catches worker errors, prints the traceback and re-raises a bare Exception; keep its text.
        try:
            return pq_compute(str(gt_json), str(pred_json), gt_folder=str(gt_folder), pred_folder=str(pred_folder))
        except Exception as error:
            raise RuntimeError(f"panopticapi pq_compute failed: {error}\n{output.getvalue()[-2000:]}") from error


def summarize_pq(results: dict) -> dict[str, float]:
    """The flat summary of a ``panoptic_quality`` result: ``pq, sq, rq`` (All) and ``pq_th, sq_th, rq_th``,
    ``pq_st, sq_st, rq_st`` (Things, Stuff), fractions."""
    summary = {}
    for group, suffix in (("All", ""), ("Things", "_th"), ("Stuff", "_st")):
        for metric in ("pq", "sq", "rq"):
            summary[metric + suffix] = float(results[group][metric])
    return summary


class PanopticEvaluator:
    """Writes predictions in the COCO panoptic format and scores them with ``panoptic_quality``.

    Args:
        gt_json, gt_folder: the ground truth (``annotations/panoptic_val2017.json`` and its PNG folder).
        output_dir: where ``predictions.json`` and ``predictions/*.png`` go (and, when only some images are
            evaluated, ``ground_truth_subset.json``: the ground truth of just those images).
        thing_category_ids, stuff_category_ids: contiguous thing / stuff index -> COCO category id.

    Usage::

        evaluator = PanopticEvaluator(gt_json, gt_folder, "out/eval", thing_ids, stuff_ids)
        for image, target in val_set:
            result = model([image])[0]
            evaluator.update(target["image_id"], target["file_name"], result["panoptic_seg"],
                             result["segments_info"])
        results = evaluator.compute()    # panopticapi's dict on every rank
    """

    def __init__(
        self,
        gt_json: str | Path,
        gt_folder: str | Path,
        output_dir: str | Path,
        thing_category_ids: Sequence[int],
        stuff_category_ids: Sequence[int],
    ) -> None:
        self.gt_json, self.gt_folder, self.output_dir = Path(gt_json), Path(gt_folder), Path(output_dir)
        self.thing_category_ids, self.stuff_category_ids = list(thing_category_ids), list(stuff_category_ids)
        self._predictions: list[dict] = []  # {"image_id", "file_name", "png" (bytes), "segments_info"}

    def update(self, image_id, file_name: str, panoptic: torch.Tensor, segments_info: list[dict]) -> None:
        """One image: ``panoptic`` (H, W) segment ids (0 = void) and its ``segments_info`` with contiguous
        ``category_id`` and ``isthing`` (as ``combine_panoptic`` returns them), at the image's original size."""
        from panopticapi.utils import id2rgb

        segments = []
        for segment in segments_info:
            ids = self.thing_category_ids if segment["isthing"] else self.stuff_category_ids
            segments.append({"id": int(segment["id"]), "category_id": int(ids[segment["category_id"]])})
        buffer = io.BytesIO()
        Image.fromarray(id2rgb(panoptic.cpu().numpy().astype(np.int64)).astype(np.uint8)).save(buffer, format="PNG")
        name = Path(file_name).with_suffix(".png").name
        self._predictions.append(
            {"image_id": image_id, "file_name": name, "png": buffer.getvalue(), "segments_info": segments}
        )

    def compute(self, *, verbose: bool = False) -> dict:
        """Gather every rank's predictions, write them, score on rank 0; every rank returns the result."""
        predictions = self._predictions
        distributed = dist.is_available() and dist.is_initialized()
        if distributed:
            gathered: list = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, predictions)
            predictions = [p for rank in gathered for p in rank]
        results = None
        if not distributed or dist.get_rank() == 0:
            results = self._score(predictions, verbose=verbose)
        if distributed:
            box = [results]
            dist.broadcast_object_list(box, src=0)
            results = box[0]
        return results

    def _score(self, predictions: list[dict], *, verbose: bool) -> dict:
        folder = self.output_dir / "predictions"
        folder.mkdir(parents=True, exist_ok=True)
        annotations = []
        for prediction in predictions:
            (folder / prediction["file_name"]).write_bytes(prediction["png"])
            annotations.append({k: prediction[k] for k in ("image_id", "file_name", "segments_info")})
        gt = json.loads(self.gt_json.read_text())
        pred_json = self.output_dir / "predictions.json"
        atomic_write_text(pred_json, json.dumps({"annotations": annotations, "categories": gt["categories"]}))
        evaluated = {a["image_id"] for a in annotations}
        gt_json = self.gt_json
        if evaluated != {a["image_id"] for a in gt["annotations"]}:
            # Scoring a subset: the ground truth of exactly those images, else pq_compute asks for the rest.
            gt_json = self.output_dir / "ground_truth_subset.json"
            subset = {**gt, "annotations": [a for a in gt["annotations"] if a["image_id"] in evaluated]}
            subset["images"] = [i for i in gt.get("images", []) if i["id"] in evaluated]
            atomic_write_text(gt_json, json.dumps(subset))
        return panoptic_quality(gt_json, self.gt_folder, pred_json, folder, verbose=verbose)
