"""``finrag-ask``: answer one question with a configured system; print the answer, its citations and searches.

Usage::

    finrag-ask --env demo "公司新工厂的设计产能是多少？"
    finrag-ask --system agent --params llm.backend=openai,llm.base_url=http://127.0.0.1:30000/v1 "…" --json

The systems, prompts, retrievers and LLM are the ``rag_answer`` pipeline's
(``conf/*/parameters_rag_answer.yml``, ``llm``); only what the chosen system needs is loaded (an agent over
``bm25`` loads no encoder). Applications use :func:`load_asker`::

    from finrag_pipelines.ask import load_asker

    with load_asker(env="demo") as asker:
        record = asker.ask("公司新工厂的设计产能是多少？")
    answer, cited = record.answer, record.citations

It sits outside the Kedro-free :mod:`finrag_pipelines.rag` library, like serve.py.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from pydantic import BaseModel

from finrag_pipelines.llm.client import client_factory
from finrag_pipelines.llm.config import LLMConfig
from finrag_pipelines.rag.chat import JournaledChat
from finrag_pipelines.rag.factory import (
    EVALUATED,
    Indexes,
    PromptSet,
    build_searchers,
    build_systems,
    retriever_reasons,
    system_status,
)
from finrag_pipelines.rag.protocols import tool_schema_from_config
from finrag_pipelines.rag.records import AnswerRecord, Question
from finrag_pipelines.rag.runner import answer_questions
from finrag_pipelines.rag.settings import (
    RETRIEVERS,
    AnswerSettings,
    AskSettings,
    ExtractiveSettings,
    SearchSettings,
    SystemsParams,
)
from finrag_pipelines.retrieval.types import Unavailable

logger = logging.getLogger(__name__)

SNIPPET_CHARS = 40
M = TypeVar("M", bound=BaseModel)


class AskError(RuntimeError):
    """The configured system cannot answer here (not evaluable, unknown, or misconfigured)."""


class Asker:
    """One configured system, ready to answer questions (the journal stays open until :meth:`close`).

    Args:
        system: The built system.
        chat: Its LLM route (``None`` for the extractive reader).
        journal: The response journal (closed by :meth:`close`), or ``None``.
        documents: ``doc_id -> (title, text)`` for printing citations.
    """

    def __init__(
        self, system: Any, chat: JournaledChat | None, journal: Any, documents: dict[str, tuple[str, str]]
    ):
        self.system = system
        self._chat = chat
        self._journal = journal
        self._documents = documents

    def ask(self, question: str) -> AnswerRecord:
        """Answer one question (a failed LLM request or search is in ``record.error``)."""
        qid = "ask-" + hashlib.sha256(question.encode("utf-8")).hexdigest()[:10]
        records = answer_questions(
            [self.system], [Question(qid, question)], concurrency=1, chat=self._chat, desc="finrag-ask"
        )
        return records[0]

    def title(self, doc_id: str) -> str:
        """A document's title, or the start of its text when it has none."""
        title, text = self._documents.get(doc_id, ("", ""))
        if title.strip():
            return title.strip()
        flat = " ".join(text.split())
        return flat if len(flat) <= SNIPPET_CHARS else flat[:SNIPPET_CHARS] + "…"

    def close(self) -> None:
        """Close the journal."""
        if self._journal is not None:
            self._journal.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ):
        self.close()


def _load(catalog: Any, name: str) -> Any:
    return catalog.load(name)


def load_asker(
    env: str | None = None,
    system: str | None = None,
    project_dir: str | Path | None = None,
    runtime_params: dict[str, Any] | None = None,
) -> Asker:
    """Build a configured system from the Kedro project's conf and catalog.

    Args:
        env: Kedro environment (``"demo"``), ``None`` for the default.
        system: A name under ``rag_answer.systems``; ``None``: ``rag_answer.ask.system``.
        project_dir: The project root (default: found from the current folder).
        runtime_params: Overrides as ``kedro run --params`` gives them (nested dicts).

    Raises:
        AskError: When the system is unknown or cannot run here (the reason says why).
    """
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    root = Path(project_dir).resolve() if project_dir else _project_root(Path.cwd())
    bootstrap_project(root)
    with KedroSession.create(project_path=root, env=env, runtime_params=runtime_params or {}) as session:
        context = session.load_context()
        params = context.params
        conf = params.get("rag_answer") or {}
        specs = _typed(conf.get("systems"), SystemsParams).root
        name = system or _typed(conf.get("ask"), AskSettings).system
        if name not in specs:
            raise AskError(f"system {name!r} is not configured; rag_answer.systems has {sorted(specs)}")
        spec = specs[name]
        llm = params["llm"] if isinstance(params["llm"], LLMConfig) else LLMConfig.from_mapping(params["llm"])
        search = _typed(conf.get("search"), SearchSettings)
        catalog = context.catalog
        corpus = _load(catalog, "corpus")
        indexes = None if search.url is not None else _indexes(catalog, corpus, spec.retriever)
        status = system_status({name: spec}, llm.backend, retriever_reasons(indexes))[name]
        if status != EVALUATED:
            raise AskError(f"system {name!r} cannot answer here: {status}")
        journal = _load(catalog, "llm_journal") if llm.backend == "openai" else None
        chat = (
            JournaledChat(llm, journal, client_factory(llm, _load(catalog, "llm_credentials")))
            if journal is not None
            else None
        )
        prompts = PromptSet.from_mappings(
            {
                n: _load(catalog, f"prompt_rag_{n}")
                for n in ("closed_book", "single_shot", "agent", "agent_text")
            }
        )
        retrievers = {spec.retriever} if spec.retriever else set()
        searchers = build_searchers(retrievers, search, indexes, journal)
        (built,) = build_systems(
            {name: spec},
            {name: status},
            settings=_typed(conf.get("answer"), AnswerSettings),
            extractive=_typed(conf.get("extractive"), ExtractiveSettings),
            chat=chat,
            prompts=prompts,
            tool_schema=tool_schema_from_config(_load(catalog, "rag_search_tool")),
            searchers=searchers,
        )
    documents = {
        str(d): (str(t or ""), str(x or ""))
        for d, t, x in zip(corpus["doc_id"], corpus["title"], corpus["text"])
    }
    return Asker(built, chat, journal, documents)


def _typed(value: Any, model: type[M]) -> M:
    """A params group as ``model`` (Kedro may hand it over already validated, or as a mapping)."""
    if isinstance(value, model):
        return value
    if isinstance(value, BaseModel):
        value = value.model_dump()
    return model.model_validate(value)


def _indexes(catalog: Any, corpus: Any, retriever: str | None) -> Indexes:
    """Load only the indexes and encoders ``retriever`` needs (the rest stand in as ``Unavailable``)."""
    unused = Unavailable(what="index", reason="not needed by this system")
    flavour, method = RETRIEVERS[retriever] if retriever else ("base", "none")
    loaded: dict[str, Any] = {
        "bm25": unused,
        "dense": unused,
        "encoder": unused,
        "dense_finetuned": unused,
        "encoder_finetuned": unused,
    }
    if method in ("bm25", "hybrid"):
        loaded["bm25"] = _load(catalog, "bm25_index")
    if method in ("dense", "hybrid"):
        if flavour == "base":
            loaded["dense"], loaded["encoder"] = _load(catalog, "dense_index"), _load(catalog, "base_encoder")
        else:
            loaded["dense_finetuned"] = _load(catalog, "dense_finetuned_index")
            loaded["encoder_finetuned"] = _load(catalog, "finetuned_model@encoder")
    return Indexes(
        doc_ids=list(corpus["doc_id"].astype(str)),
        titles=list(corpus["title"].fillna("").astype(str)),
        texts=list(corpus["text"].fillna("").astype(str)),
        **loaded,
    )


def _project_root(start: Path) -> Path:
    for folder in (start, *start.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "conf").is_dir():
            return folder
    raise AskError(f"no Kedro project (pyproject.toml + conf/) at or above {start}; pass --project-dir.")


def parse_params(text: str | None) -> dict[str, Any]:
    """``a.b=1,c=x`` (``kedro run --params`` syntax) as nested dicts, values typed by OmegaConf.

    Raises:
        AskError: On an item without ``=``.
    """
    if not text:
        return {}
    from omegaconf import OmegaConf

    items = [item.strip() for item in text.split(",") if item.strip()]
    bad = [item for item in items if "=" not in item or not item.partition("=")[0].strip()]
    if bad:
        raise AskError(f"--params items must be key=value, got {bad}")
    return OmegaConf.to_container(OmegaConf.from_dotlist(items))  # type: ignore[return-value]


def render(record: AnswerRecord, asker: Asker) -> str:
    """The human-readable answer: system, answer, citations with titles, searches, what went wrong."""
    system = asker.system
    protocol = f"protocol {system.protocol}; " if system.protocol else ""
    lines = [
        f"system: {system.name} ({system.kind}; retriever {system.retriever or 'none'}; "
        f"{protocol}model {system.model})"
    ]
    if record.failed:
        return "\n".join([*lines, f"failed: {record.error}"])
    lines.append(f"answer: {record.answer or '(no answer)'}" + ("  [abstained]" if record.abstained else ""))
    lines.append("citations:" if record.citations else "citations: none")
    shown = set(record.shown_doc_ids)
    for doc_id in record.citations:
        note = "" if doc_id in shown else "  (never shown to the model: invalid)"
        lines.append(f"  [{doc_id}] {asker.title(doc_id)}{note}")
    lines.append("searches:" if record.searches else "searches: none")
    for i, search in enumerate(record.searches, start=1):
        hits = ", ".join(f"{d} ({s:.3g})" for d, s in zip(search.doc_ids, search.scores)) or "nothing found"
        lines.append(f"  {i}. {search.query} → {hits}")
    counted = {k: v for k, v in vars(record.counters).items() if v}
    if counted:
        lines.append("counted: " + ", ".join(f"{k}={v}" for k, v in counted.items()))
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="finrag-ask", description=__doc__.split("\n\n")[0])
    parser.add_argument("question", help="the question to answer")
    parser.add_argument("--env", default=None, help="Kedro environment, e.g. demo (default: local)")
    parser.add_argument(
        "--system", default=None, help="a name under rag_answer.systems (default: rag_answer.ask.system)"
    )
    parser.add_argument(
        "--params", default=None, help="overrides as for kedro run, e.g. llm.backend=openai,llm.base_url=…"
    )
    parser.add_argument(
        "--project-dir", type=Path, default=None, help="Kedro project root (default: found from cwd)"
    )
    parser.add_argument("--json", action="store_true", help="print the answer record as one JSON object")
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (``finrag-ask``); exit 0 answered, 1 the question failed, 2 cannot answer here."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
    # Kedro's rich logging writes to stdout: keep stdout for the answer (one JSON object with --json)
    with contextlib.redirect_stdout(sys.stderr):
        try:
            asker = load_asker(args.env, args.system, args.project_dir, parse_params(args.params))
        except (AskError, ValueError) as exc:
            sys.stderr.write(f"finrag-ask: {exc}\n")
            return 2
        with asker:
            record = asker.ask(args.question)
    if args.json:
        payload = {
            **record.to_dict(),
            "cited_documents": [{"doc_id": d, "title": asker.title(d)} for d in record.citations],
        }
        sys.stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(render(record, asker) + "\n")
    return 1 if record.failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
