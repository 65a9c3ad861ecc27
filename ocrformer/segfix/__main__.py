"""``python -m ocrformer.segfix refine ...``: SegFix refinement of label PNGs (``ocrformer.segfix.cli``).

The command lives in ``cli.py`` and this file only runs it, so that nothing imports ``__main__`` as a module and
runpy has no reason to warn that it was found in ``sys.modules`` before being run."""

from .cli import main

if __name__ == "__main__":
    main()
