"""``python -m benchmarks.cli``: the same as ``hacknip-bench``."""

import sys

from . import main

sys.exit(main())
