"""Running what users run: a repository script in a subprocess, and a training run stopped part-way."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_script(script: Path, *args: str, timeout: float = 600, expect: int = 0) -> subprocess.CompletedProcess:
    """``python SCRIPT ARGS`` from the repository root with this interpreter, as a user runs it; asserts the exit
    status is ``expect`` (showing the ends of stdout and stderr when it is not)."""
    result = subprocess.run([sys.executable, str(script), *args], cwd=REPO, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == expect, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def stop_after(trainer, iterations: int) -> None:
    """Make ``trainer.fit()`` stop after ``iterations`` steps the way SIGTERM stops it: the step finishes, a
    checkpoint is written and ``fit`` returns ``{"interrupted": True}``."""
    step = trainer._step

    def step_then_signal(*args):
        result = step(*args)
        if trainer.iteration == iterations - 1:  # the step that makes iteration `iterations`
            trainer._stop_signal = signal.SIGTERM
        return result

    trainer._step = step_then_signal
