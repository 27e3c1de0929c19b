"""``python -m finrag_pipelines.lineage``: see :mod:`finrag_pipelines.lineage.cli`."""

import sys

from finrag_pipelines.lineage.cli import main

sys.exit(main())
