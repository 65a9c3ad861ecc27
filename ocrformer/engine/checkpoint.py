"""Checkpoints that survive crashes: written to a temporary file beside the target, then ``os.replace``d
(atomic on POSIX), so a kill mid-write leaves the previous checkpoint intact. The temporary files of writers
that were killed (``.NAME.<pid>.partial``) are removed by the next write; a full disk is reported as such, with
the file that could not be written."""

from __future__ import annotations

import errno
import os
import random
import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "TRAINING_CHECKPOINT_KEYS",
    "atomic_save",
    "capture_rng_state",
    "is_training_checkpoint",
    "load_checkpoint",
    "non_finite_tensors",
    "remove_stale_partials",
    "restore_rng_state",
]

# What ``Trainer.save_checkpoint`` writes (besides extras); a file without them is not a training checkpoint.
TRAINING_CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "iteration", "config")
# Below this many free bytes after a failed write, the disk is taken to be full.
_FULL_DISK_MARGIN = 64 * 2**20


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove_stale_partials(path: Path) -> list[Path]:
    """Delete ``.NAME.<pid>.partial`` files beside ``path`` left by writers that no longer run (a SIGKILL or a
    power cut during ``torch.save``); a live process's file is left alone. Returns the files removed."""
    removed = []
    for partial in path.parent.glob(f".{path.name}.*.partial"):
        pid = partial.name[len(path.name) + 2 : -len(".partial")]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            partial.unlink(missing_ok=True)
            removed.append(partial)
    return removed


def atomic_save(obj: object, path: str | Path) -> Path:
    """``torch.save(obj, path)`` atomically. Raises ``OSError`` naming ``path`` when it cannot be written (with
    ``errno.ENOSPC`` and "the disk is full" when that is why); the file previously at ``path`` is then intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        torch.save(obj, partial)
        os.replace(partial, path)
    except (OSError, RuntimeError) as error:  # torch.save reports a full disk as RuntimeError ("unexpected pos")
        free = shutil.disk_usage(path.parent).free  # with the partial file still there: what the write left
        kept = f"; the previous {path.name} is intact" if path.exists() else ""
        if getattr(error, "errno", None) == errno.ENOSPC or free < _FULL_DISK_MARGIN:
            raise OSError(
                errno.ENOSPC, f"could not write {path}: the disk is full ({free / 2**20:.0f} MiB free){kept}"
            ) from error
        raise OSError(getattr(error, "errno", None) or errno.EIO, f"could not write {path}: {error}{kept}") from error
    finally:
        partial.unlink(missing_ok=True)
    return path


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
