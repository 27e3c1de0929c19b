"""One folder per pipeline; pipelines never import each other and meet only through the catalog."""
