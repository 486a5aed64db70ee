"""``python -m leansnn ...``: the ``leansnn`` command, so that
``torchrun --nproc-per-node N -m leansnn train-snn ...`` works without the console script."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
