"""``finrag-serve``: load the built indexes through the Kedro catalog and serve them over HTTP.

Usage::

    finrag-serve --env demo --host 127.0.0.1 --port 8000 [--method fusion] [--alpha 0.3] [--token-env VAR]
    python -m finrag_pipelines.serve --env demo

Settings come from the ``serving`` parameters group (``conf/base/parameters_serving.yml``); the flags
override single keys. The server refuses to start when an index does not match the corpus or the encoder.

It sits outside the Kedro-free :mod:`finrag_pipelines.serving` library, like settings.py and
pipeline_registry.py.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from finrag_pipelines.retrieval.first_stage import FusionSettings
from finrag_pipelines.retrieval.types import IndexMismatchError, Unavailable
from finrag_pipelines.serving.backend import SearchBackend, tuned_alpha
from finrag_pipelines.serving.settings import (
    AUTO,
    METHODS,
    ServingConfigError,
    ServingSettings,
    load_settings,
)

logger = logging.getLogger(__name__)


def _project_root(start: Path) -> Path:
    for folder in (start, *start.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "conf").is_dir():
            return folder
    raise SystemExit(f"no Kedro project (pyproject.toml + conf/) at or above {start}; pass --project-dir.")


def load_from_project(
    project_dir: Path, env: str | None, overrides: dict[str, Any] | None = None
) -> tuple[SearchBackend, ServingSettings]:
    """Bootstrap the Kedro project, validate ``serving`` params and build the backend from the catalog.

    Args:
        project_dir: The Kedro project root.
        env: Kedro environment (e.g. ``"demo"``), ``None`` for the default.
        overrides: ``serving`` keys to replace (from command-line flags).

    Returns:
        ``(backend, settings)``.

    Raises:
        ServingConfigError: On invalid settings.
        IndexMismatchError: If an index does not match the corpus or the encoder.
        ValueError: If no usable index exists or ``alpha: tuned`` has no tuned weight.
    """
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(project_dir)
    with KedroSession.create(project_path=project_dir, env=env) as session:
        context = session.load_context()
        params = dict(context.params.get("serving") or {})
        if not params:
            raise ServingConfigError("no 'serving' parameters; add conf/base/parameters_serving.yml.")
        params.update(overrides or {})
        settings = load_settings(params)
        catalog = context.catalog
        names = settings.datasets
        corpus = catalog.load(names.corpus)
        bm25 = catalog.load(names.bm25_index)
        dense = catalog.load(names.dense_index)
        encoder = catalog.load(names.encoder) if not isinstance(dense, Unavailable) else None
        reranker = catalog.load(names.reranker) if settings.rerank.enabled else None
        loaded = (("bm25 index", bm25), ("dense index", dense), ("encoder", encoder), ("reranker", reranker))
        for what, obj in loaded:
            if isinstance(obj, Unavailable):
                logger.warning("serving: %s not served: %s", what, obj.reason)
        bm25 = None if isinstance(bm25, Unavailable) else bm25
        if isinstance(reranker, Unavailable):
            if settings.rerank.default:
                raise ValueError(
                    f"serving.rerank.default is true but the reranker is unavailable: {reranker.reason}"
                )
            reranker = None
        if isinstance(dense, Unavailable) or isinstance(encoder, Unavailable):
            dense, encoder = None, None
        if settings.alpha == "tuned":
            if bm25 is not None and dense is not None:
                alpha, source = (
                    tuned_alpha(catalog.load(names.fusion_weight)),
                    f"tuned ({names.fusion_weight})",
                )
            else:
                alpha, source = 0.5, "unused (hybrid unavailable)"
        else:
            alpha, source = float(settings.alpha), "conf (serving.alpha)"
        lexical, vectors, fusion = load_fusion_parts(
            catalog, settings, has_bm25=bm25 is not None, has_dense=dense is not None
        )
    backend = SearchBackend(
        doc_ids=list(corpus["doc_id"]),
        titles=list(corpus["title"].fillna("")),
        texts=list(corpus["text"].fillna("")),
        bm25=bm25,
        dense=dense,
        encoder=encoder,
        default_method=settings.method,
        alpha=alpha,
        alpha_source=source,
        fusion_depth=settings.fusion_depth,
        encode_batch_size=settings.encode_batch_size,
        parent_ids=list(corpus["parent_id"]) if "parent_id" in corpus.columns else None,
        reranker=reranker,
        rerank_depth=settings.rerank.depth,
        rerank_default=settings.rerank.default,
        lexical=lexical,
        vectors=vectors,
        fusion=fusion,
    )
    return backend, settings


def load_fusion_parts(
    catalog: Any, settings: ServingSettings, *, has_bm25: bool, has_dense: bool
) -> tuple[dict[str, Any], dict[str, tuple[Any, Any]], FusionSettings | None]:
    """The n-gram index, evaluation's fusion settings and the further indexes those settings name.

    What was never built is left out with a warning (its method is then unavailable); an index that exists
    but does not match the corpus or its encoder stops the server (the backend checks it).

    Returns:
        ``(lexical indexes by name, (vector index, encoder) by name, fusion settings or None)``.
    """
    names = settings.datasets
    lexical: dict[str, Any] = {}
    vectors: dict[str, tuple[Any, Any]] = {}
    if catalog.exists(names.bm25_ngram_index):
        lexical["bm25_ngram"] = catalog.load(names.bm25_ngram_index)
    else:
        logger.warning("serving: bm25_ngram not served: no %s (run index_build)", names.bm25_ngram_index)
    if not catalog.exists(names.fusion_settings):
        logger.warning("serving: fusion not served: no %s (run evaluation)", names.fusion_settings)
        return lexical, vectors, None
    fusion = FusionSettings.from_dict(catalog.load(names.fusion_settings), names.fusion_settings)
    missing: list[str] = []
    served = {"bm25": has_bm25, "dense": has_dense, "bm25_ngram": "bm25_ngram" in lexical}
    for name in fusion.retrievers:
        if name in served:
            missing += [] if served[name] else [f"{name} (not served here)"]
            continue
        entry = names.fusion_indexes.get(name)
        index = catalog.load(entry) if entry and catalog.exists(entry) else None
        if index is None or isinstance(index, Unavailable):
            missing.append(f"{name} ({entry or 'not in serving.datasets.fusion_indexes'})")
        elif name in names.fusion_encoders:
            encoder = catalog.load(names.fusion_encoders[name])
            if isinstance(encoder, Unavailable):
                missing.append(f"{name}: {encoder.reason}")
            else:
                vectors[name] = (index, encoder)
        else:
            lexical[name] = index
    if missing:
        logger.warning("serving: fusion not served: its settings need %s", "; ".join(missing))
        return lexical, vectors, None
    logger.info("serving: fusion (%s over %s, %s)", fusion.method, list(fusion.retrievers), fusion.source)
    return lexical, vectors, fusion


def resolve_token(var: str | None) -> str | None:
    """The bearer token from environment variable ``var`` (``None``: no auth).

    Raises:
        SystemExit: If ``var`` is named but unset or empty (never start open when a token was asked for).
    """
    if var is None:
        return None
    value = os.environ.get(var, "").strip()
    if not value:
        raise SystemExit(
            f"--token-env/serving.token_env names {var}, but ${var} is unset or empty; export it."
        )
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="finrag-serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default=None, help="Kedro environment, e.g. demo (default: local)")
    parser.add_argument(
        "--project-dir", type=Path, default=None, help="Kedro project root (default: found from cwd)"
    )
    parser.add_argument("--host", default=None, help="bind address (serving.host)")
    parser.add_argument("--port", type=int, default=None, help="TCP port (serving.port)")
    parser.add_argument(
        "--method", choices=(*METHODS, AUTO), default=None, help="default method (serving.method)"
    )
    parser.add_argument(
        "--alpha", default=None, help="hybrid dense weight in [0, 1] or 'tuned' (serving.alpha)"
    )
    parser.add_argument(
        "--token-env", default=None, help="env var holding the bearer token (serving.token_env)"
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point (``finrag-serve``)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
    overrides: dict[str, Any] = {
        key: value
        for key, value in (
            ("host", args.host),
            ("port", args.port),
            ("method", args.method),
            ("token_env", args.token_env),
        )
        if value is not None
    }
    if args.alpha is not None:
        overrides["alpha"] = args.alpha if args.alpha == "tuned" else _float(args.alpha)
    if args.token_env is not None:
        resolve_token(args.token_env)  # fail before the (slow) index loading
    project = (args.project_dir or _project_root(Path.cwd())).resolve()
    try:
        backend, settings = load_from_project(project, args.env, overrides)
    except (ServingConfigError, IndexMismatchError, ValueError) as exc:
        logger.error("finrag-serve: refusing to start: %s", exc)
        raise SystemExit(2) from exc
    token = resolve_token(settings.token_env)
    from finrag_pipelines.serving.app import create_app
    from finrag_pipelines.serving.server import serve

    app = create_app(backend, settings, token=token)
    logger.info(
        "finrag-serve: http://%s:%d (auth: %s)", settings.host, settings.port, "bearer" if token else "none"
    )
    serve(app, settings.host, settings.port, log_level=args.log_level)


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise SystemExit(f"--alpha must be a number in [0, 1] or 'tuned', got {text!r}.") from None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


if __name__ == "__main__":
    main()
