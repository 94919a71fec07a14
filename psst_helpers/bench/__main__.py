"""``python -m psst_helpers.bench SUITE [options]``: see :mod:`psst_helpers.bench.cli`."""
import sys

from .cli import main

sys.exit(main())
