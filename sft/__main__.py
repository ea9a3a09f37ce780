"""``python -m sft ...``: the command line of :mod:`sft.workflow.cli`."""
from .workflow.cli import main

raise SystemExit(main())
