"""``python -m sft ...``: the command line of :mod:`sft.cli`."""
from .cli import main

raise SystemExit(main())
