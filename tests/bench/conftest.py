"""bench/ is not a package: put it on ``sys.path`` so its modules import by their bare names,
as they do when a bench script is run (Python puts the script's folder first on the path)."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"

if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))
