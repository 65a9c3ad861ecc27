"""Checkpoints that survive crashes (written by ``ocrformer._atomic.atomic_write``: a kill mid-write leaves the
previous checkpoint intact, killed writers' temporary files are removed, a full disk is named), read back with
errors that name the file, and the RNG state that makes a resume exact."""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from .._atomic import atomic_write

__all__ = [
    "TRAINING_CHECKPOINT_KEYS",
    "atomic_save",
    "capture_rng_state",
    "is_training_checkpoint",
    "load_checkpoint",
    "non_finite_tensors",
    "restore_rng_state",
]

# What ``Trainer.save_checkpoint`` writes (besides extras); a file without them is not a training checkpoint.
TRAINING_CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "iteration", "config")


def atomic_save(obj: object, path: str | Path) -> Path:
    """``torch.save(obj, path)`` through ``ocrformer._atomic.atomic_write``: no torn file after a kill; a failed
    write raises ``OSError`` naming ``path`` (a full disk as such), the file previously at ``path`` intact."""
    return atomic_write(path, lambda partial: torch.save(obj, partial))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint file written by ``torch.save``: a dict (a training checkpoint, or a state dict).

    Raises ``FileNotFoundError``/``ValueError`` naming the file when it is missing, unreadable or not a dict."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        # Our own files hold RNG states (numpy arrays, Python tuples): not loadable with weights_only.
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as error:  # a truncated or foreign file
        raise ValueError(f"checkpoint {str(path)!r} cannot be read: {error}") from error
    if not isinstance(state, Mapping):
        raise ValueError(
            f"checkpoint {str(path)!r} holds a {type(state).__name__}, not a checkpoint (a dict of a training "
            "run's state, or a model's state dict)"
        )
    return dict(state)


def is_training_checkpoint(state: Mapping) -> bool:
    return all(key in state for key in TRAINING_CHECKPOINT_KEYS)


def non_finite_tensors(tensors: Mapping) -> list[str]:
    """Names of the floating-point tensors in ``tensors`` (nested dicts and lists too, e.g. an optimizer's
    state) that hold a NaN or an infinity."""
    found = []

    def visit(name: str, value) -> None:
        if isinstance(value, torch.Tensor):
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                found.append(name)
        elif isinstance(value, Mapping):
            for key, item in value.items():
                visit(f"{name}.{key}" if name else str(key), item)
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                visit(f"{name}.{i}", item)

    visit("", tensors)
    return found


def capture_rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
