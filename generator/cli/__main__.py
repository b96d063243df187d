"""`python -m generator.cli`: the same as the `overseer` console script."""

from . import main

main()
