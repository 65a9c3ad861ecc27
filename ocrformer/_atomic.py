"""One way to write a file so that no reader, crash or full disk ever leaves a torn one.

``atomic_write(path, write)`` calls ``write(partial)`` on a temporary file beside ``path`` and renames it over
``path`` (atomic on POSIX): a kill at any moment leaves the previous file or the new one. The temporary files
of writers that were killed (``.NAME.<pid>.partial``) are removed by the next write; a write that fails raises
``OSError`` naming the file (``errno.ENOSPC`` and "the disk is full" when that is why), the previous file intact.
Every checkpoint, JSON and Markdown file the package and its scripts write goes through it: checkpoints and
converted checkpoints, the metrics log, ``config.json``, the results reports, the panoptic evaluation's
prediction JSON, the synthetic datasets' JSON, the attention table, the benchmarks' reports. (Images -- PIL's
PNGs, matplotlib's figures -- are written directly.)
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_text", "remove_stale_partials"]

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
    power cut mid-write); a live process's file is left alone. Returns the files removed."""
    removed = []
    for partial in path.parent.glob(f".{path.name}.*.partial"):
        pid = partial.name[len(path.name) + 2 : -len(".partial")]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            partial.unlink(missing_ok=True)
            removed.append(partial)
    return removed


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """``write(partial_path)``, then rename the result over ``path`` (see the module docstring). Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        write(partial)
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


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda partial: partial.write_text(text))
