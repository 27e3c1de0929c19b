"""``python -m finrag_pipelines.serving`` = ``finrag-serve``."""

from finrag_pipelines.serving.cli import main

main()
