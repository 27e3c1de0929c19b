"""The notebook is committed without outputs and only loads datasets the catalog defines."""

import re
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]


def catalog_names() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "conf" / "base").glob("catalog*.yml"):
        names |= {k for k in yaml.safe_load(path.read_text(encoding="utf-8")) if not k.startswith("_")}
    return names


def test_notebooks_are_stripped_and_use_the_catalog():
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert notebooks
    known = catalog_names()
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), f"{path.name} has outputs"
        source = "\n".join(c.source for c in code)
        assert "%load_ext kedro.ipython" in source
        loaded = set(re.findall(r'catalog\.load\("([^"]+)"\)', source))
        assert loaded and loaded <= known, f"{path.name} loads unknown datasets {loaded - known}"
