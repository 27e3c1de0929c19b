"""Every environment under conf/ opens: catalog entries resolve, every params group of every node validates.

Nothing runs. A typo in an environment's catalog templating, or a params key a model no longer has, fails
here instead of shipping with CI green because no other test opens that environment.
"""

from __future__ import annotations

import dataclasses
import inspect
import shutil
import types
import typing
from pathlib import Path

import pydantic
import pytest
import yaml
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from finrag_pipelines.pipeline_registry import all_pipelines, own_pipelines
from finrag_pipelines.serving.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
# conf/local is the git-ignored machine folder (no configuration in a clean clone): equal to base there
ENVS = sorted(p.name for p in (ROOT / "conf").iterdir() if p.is_dir() and p.name != "local")
# where conf/base expects the user's Qwen3-Embedding checkpoint (globals.yml encoders.qwen3.model_path)
BASE_MODEL = Path("pretrain_models/embedding/Qwen3-Embedding-0.6B")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's conf/ in a scratch folder, with a stand-in for the user's model folder."""
    project = tmp_path_factory.mktemp("conf_envs")
    shutil.copytree(ROOT / "conf", project / "conf")
    shutil.copy(ROOT / "pyproject.toml", project / "pyproject.toml")
    (project / "src").mkdir()
    (project / BASE_MODEL).mkdir(parents=True)
    (project / BASE_MODEL / "config.json").write_text('{"model_type": "qwen3"}', encoding="utf-8")
    bootstrap_project(project)
    return project


def _model_type(annotation: object) -> type | None:
    """The pydantic model or dataclass a params argument is annotated with (``X | None`` unwrapped)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = inner[0] if len(inner) == 1 else None
    if isinstance(annotation, type) and (
        issubclass(annotation, pydantic.BaseModel) or dataclasses.is_dataclass(annotation)
    ):
        return annotation
    return None


def _params_inputs() -> dict[str, dict[str, object]]:
    """``params:`` key -> {node name: annotation} over every node of every registered pipeline."""
    found: dict[str, dict[str, object]] = {}
    for pipeline in all_pipelines().values():
        for node in pipeline.nodes:
            # a type imported only under TYPE_CHECKING makes this raise (and Kedro skip validation silently)
            hints = typing.get_type_hints(node.func)
            declared = node._inputs  # as written in pipeline.py: a name, a list (positional) or {arg: name}
            if isinstance(declared, dict):
                pairs = [(dataset, arg) for arg, dataset in declared.items()]
            else:
                names = [declared] if isinstance(declared, str) else list(declared or [])
                pairs = list(zip(names, inspect.signature(node.func).parameters))
            for dataset, arg in pairs:
                if dataset.startswith("params:"):
                    found.setdefault(dataset.removeprefix("params:"), {})[node.name] = hints.get(arg)
    return found


def _lookup(params: dict, key: str) -> object:
    value: object = params
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(part)
        value = value[part]
    return value


@pytest.mark.parametrize("env", ENVS)
def test_environment_opens_resolves_its_catalog_and_validates_every_params_group(project: Path, env: str):
    assert {"base", "demo", "test", "milvus"} <= set(ENVS)
    pipelines = all_pipelines()
    with KedroSession.create(project_path=project, env=env) as session:
        context = session.load_context()
        params = context.params  # Kedro validates the typed groups of every pipeline here
        catalog = context.catalog

    problems = []
    for key, users in sorted(_params_inputs().items()):
        try:
            value = _lookup(params, key)
        except KeyError:
            problems.append(f"params:{key} (read by {sorted(users)}) is not in the {env} parameters")
            continue
        models = {_model_type(a) for a in users.values()} - {None}
        if models and any(_model_type(a) is None for a in users.values()):
            # Kedro hands every node the validated model: a node annotating a plain type gets the model too
            problems.append(
                f"params:{key} is typed {sorted(m.__name__ for m in models)} by some nodes, "
                f"a plain type by others: {users}"
            )
        for node, annotation in users.items():
            model = _model_type(annotation)
            if model is not None and not isinstance(value, model) and value is not None:
                problems.append(f"params:{key} was not validated as {model.__name__} (node {node})")
    assert not problems, "\n".join(problems)
    load_settings(params["serving"])  # finrag-serve's group, read outside the pipelines

    used = {
        d
        for p in pipelines.values()
        for d in p.datasets()
        if not d.startswith("params:") and d != "parameters"
    }
    entries = catalog.keys()
    configured = {name for name in entries if not name.startswith("params:") and name != "parameters"}
    assert configured <= used, f"{env}: catalog entries no pipeline uses: {sorted(configured - used)}"
    free = {d for p in pipelines.values() for d in p.inputs() if not d.startswith("params:")}
    for name in sorted(used):
        dataset = catalog.get(name)  # builds the dataset from its resolved entry (factories included)
        assert dataset is not None or name not in free, (
            f"{env}: {name} is read by a pipeline but not in the catalog"
        )
        if dataset is not None:
            str(dataset)  # its description resolves too

    # fine-tuning starts from the base encoder's model when that is an HF folder, else from a tiny model
    start = catalog.get("finetune_base_model@dir")
    assert start.exists() == (env == "base"), f"{env}: {start}"


def base(name: str) -> str:
    return name.split("@", 1)[0]


def _catalog_entries(path: Path) -> set[str]:
    return {k for k in yaml.safe_load(path.read_text(encoding="utf-8")) or {} if not k.startswith("_")}


def test_datasets_several_pipelines_read_and_none_writes_live_in_catalog_yml():
    """conf/base/catalog.yml holds exactly the shared datasets; each catalog_<pipeline>.yml the rest."""
    own = own_pipelines()  # without composed upstreams
    readers: dict[str, set[str]] = {}
    writers: dict[str, set[str]] = {}
    for name, pipeline in own.items():
        for dataset in pipeline.all_inputs():
            readers.setdefault(base(dataset), set()).add(name)
        for dataset in pipeline.all_outputs():
            writers.setdefault(base(dataset), set()).add(name)
    shared = {
        d for d, r in readers.items() if len(r) > 1 and not writers.get(d) and not d.startswith("params:")
    }
    in_shared_file = _catalog_entries(ROOT / "conf/base/catalog.yml")
    assert {base(n) for n in in_shared_file} == shared
    for path in sorted((ROOT / "conf/base").glob("catalog_*.yml")):
        pipeline = path.stem.removeprefix("catalog_")
        assert pipeline in own, f"{path.name} names no pipeline"
        stray = {n for n in _catalog_entries(path) if base(n) in shared}
        assert not stray, f"{path.name} holds shared datasets {sorted(stray)}: move them to catalog.yml"


@pytest.mark.parametrize("env", [e for e in ENVS if e != "base"])
def test_an_environment_holds_only_what_differs(env: str):
    """No value in conf/<env>/{parameters,globals}*.yml repeats what the layers below it already say."""
    from finrag_pipelines.settings import CONFIG_LOADER_ARGS, CONFIG_LOADER_CLASS

    loader = CONFIG_LOADER_CLASS(str(ROOT / "conf"), env=env, **CONFIG_LOADER_ARGS)
    layers = loader.env_layers()
    below = CONFIG_LOADER_CLASS(
        str(ROOT / "conf"), env=layers[-2] if len(layers) > 1 else "base", **CONFIG_LOADER_ARGS
    )
    repeated = []
    for key, pattern in (("parameters", "parameters*.yml"), ("globals", "globals.yml")):
        inherited = below[key]
        for path in sorted((ROOT / "conf" / env).glob(pattern)):
            for dotted, value in _leaves(yaml.safe_load(path.read_text(encoding="utf-8")) or {}):
                if isinstance(value, str) and "${" in value:
                    continue
                try:
                    if _lookup(inherited, dotted) == value:
                        repeated.append(f"{path.relative_to(ROOT)}: {dotted}: {value!r}")
                except KeyError:
                    pass
    assert not repeated, "values already inherited:\n" + "\n".join(repeated)


def _leaves(tree: dict, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.extend(_leaves(value, f"{prefix}{key}."))
        else:
            out.append((f"{prefix}{key}", value))
    return out
