"""``python -m brakepedal``: the same as the ``brakepedal`` console script."""

from brakepedal.cli import main

main()
