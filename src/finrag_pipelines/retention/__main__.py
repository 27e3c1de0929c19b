"""``python -m finrag_pipelines.retention``: see :mod:`finrag_pipelines.retention.cli`."""

import sys

from finrag_pipelines.retention.cli import main

sys.exit(main())
