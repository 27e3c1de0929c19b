"""Build the configured systems from settings and loaded objects; decide which can be evaluated and why not.

The ``rag_answer`` pipeline and ``finrag-ask`` both go through here, so a system means the same thing in
both: the same prompts, retriever, protocol and prompt hash.

Kedro-free library module.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from finrag_pipelines.llm.journal import ResponseJournal
from finrag_pipelines.llm.prompts import PromptTemplate
from finrag_pipelines.rag.chat import JournaledChat
from finrag_pipelines.rag.protocols import FunctionCalling, TextTags
from finrag_pipelines.rag.search import (
    BackendSearcher,
    HttpSearcher,
    JournaledSearcher,
    Searcher,
    search_batcher,
)
from finrag_pipelines.rag.settings import (
    RETRIEVERS,
    AnswerSettings,
    ExtractiveSettings,
    SearchSettings,
    SystemSpec,
)
from finrag_pipelines.rag.systems import Agent, AnswerSystem, ClosedBook, SingleShot
from finrag_pipelines.retrieval.types import Unavailable
from finrag_pipelines.serving.backend import SearchBackend

logger = logging.getLogger(__name__)

PROMPT_NAMES: tuple[str, ...] = ("closed_book", "single_shot", "agent", "agent_text")
EVALUATED = "evaluated"


def needs_llm(spec: SystemSpec, llm_backend: str) -> bool:
    """Whether ``spec`` needs an LLM endpoint (``single_shot`` reads extractively without one)."""
    return spec.kind != "single_shot" or llm_backend != "keyword"


@dataclass(frozen=True)
class PromptSet:
    """The answering prompts: ``closed_book``, ``single_shot``, ``agent`` (function calling) and
    ``agent_text``."""

    closed_book: PromptTemplate
    single_shot: PromptTemplate
    agent: PromptTemplate
    agent_text: PromptTemplate

    @classmethod
    def from_mappings(cls, mappings: Mapping[str, Any]) -> PromptSet:
        """From parsed YAML mappings keyed by :data:`PROMPT_NAMES`.

        Raises:
            ValueError: Naming a missing prompt; ``PromptTemplateError`` for a malformed one.
        """
        missing = [name for name in PROMPT_NAMES if name not in mappings]
        if missing:
            raise ValueError(f"rag prompts {missing} are missing; expected {list(PROMPT_NAMES)}")
        return cls(
            **{
                name: PromptTemplate.from_mapping(mappings[name], source=f"conf prompts/rag_{name}.yml")
                for name in PROMPT_NAMES
            }
        )


def stamp(payload: Any) -> str:
    """The sha256 of ``payload``'s canonical JSON (the prompt hash stamped on answers)."""
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Indexes:
    """What the in-process searches need; any index or encoder may be ``Unavailable`` (with the reason).

    Attributes:
        doc_ids, titles, texts: The corpus columns.
        bm25: The lexical index.
        dense, encoder: The base dense index and its query encoder.
        dense_finetuned, encoder_finetuned: The fine-tuned encoder's index and the encoder.
    """

    doc_ids: list[str]
    titles: list[str]
    texts: list[str]
    bm25: Any
    dense: Any
    encoder: Any
    dense_finetuned: Any
    encoder_finetuned: Any


def _reason(*parts: Any) -> str | None:
    return next((p.reason for p in parts if isinstance(p, Unavailable)), None)


def retriever_reasons(indexes: Indexes | None) -> dict[str, str | None]:
    """Why each retriever cannot run (``None``: it can); every retriever runs through a search URL."""
    if indexes is None:
        return dict.fromkeys(RETRIEVERS)
    dense = {
        "base": _reason(indexes.dense, indexes.encoder),
        "finetuned": _reason(indexes.dense_finetuned, indexes.encoder_finetuned),
    }
    out: dict[str, str | None] = {}
    for name, (flavour, method) in RETRIEVERS.items():
        lexical = _reason(indexes.bm25) if method in ("bm25", "hybrid") else None
        out[name] = lexical or (dense[flavour] if method != "bm25" else None)
    return out


def system_status(
    specs: Mapping[str, SystemSpec], llm_backend: str, reasons: Mapping[str, str | None]
) -> dict[str, str]:
    """``{system: "evaluated" | "not evaluated: <reason>"}``: what needs an LLM without one, or a retriever
    whose index or encoder does not exist, is not evaluated (never scored)."""
    status = {}
    for name, spec in specs.items():
        if needs_llm(spec, llm_backend) and llm_backend == "keyword":
            status[name] = (
                f"not evaluated: {spec.kind} needs an LLM and llm.backend is 'keyword' (offline; the "
                "extractive reader only serves single_shot). Run with --params "
                "llm.backend=openai,llm.base_url=<endpoint>"
            )
        elif spec.retriever is not None and reasons.get(spec.retriever):
            status[name] = f"not evaluated: retriever {spec.retriever}: {reasons[spec.retriever]}"
        else:
            status[name] = EVALUATED
    return status


def build_searchers(
    retrievers: set[str],
    search: SearchSettings,
    indexes: Indexes | None,
    journal: ResponseJournal | None = None,
) -> dict[str, Searcher]:
    """One searcher per retriever name: in process over ``indexes``, or against ``search.url``; with a
    ``journal``, results are journaled (:class:`JournaledSearcher`: a resumed run replays what it was shown).

    Raises:
        ValueError: When in-process search has no indexes, or ``token_env`` is named but unset.
    """
    if search.url is not None:
        token = None
        if search.token_env:
            token = os.environ.get(search.token_env, "").strip() or None
            if token is None:
                raise ValueError(
                    f"rag search.token_env names {search.token_env}, but ${search.token_env} is unset"
                )
        remote = {
            name: HttpSearcher(
                search.url,
                RETRIEVERS[name][1],
                timeout_s=search.timeout_s,
                max_retries=search.max_retries,
                token=token,
            )
            for name in sorted(retrievers)
        }
        return _journaled(remote, journal)
    if indexes is None:
        raise ValueError("in-process search needs the indexes; pass them or set search.url")
    backends: dict[str, tuple[SearchBackend, Any]] = {}
    searchers: dict[str, Searcher] = {}
    for name in sorted(retrievers):
        flavour, method = RETRIEVERS[name]
        if flavour not in backends:
            dense = indexes.dense if flavour == "base" else indexes.dense_finetuned
            encoder = indexes.encoder if flavour == "base" else indexes.encoder_finetuned
            use_dense = not isinstance(dense, Unavailable) and not isinstance(encoder, Unavailable)
            backend = SearchBackend(
                doc_ids=indexes.doc_ids,
                titles=indexes.titles,
                texts=indexes.texts,
                bm25=None if isinstance(indexes.bm25, Unavailable) else indexes.bm25,
                dense=dense if use_dense else None,
                encoder=encoder if use_dense else None,
                default_method="bm25" if not isinstance(indexes.bm25, Unavailable) else "dense",
                alpha=search.alpha,
                alpha_source="conf (rag_answer.search.alpha)",
                fusion_depth=search.fusion_depth,
                encode_batch_size=search.encode_batch_size,
            )
            batcher = search_batcher(backend, search.encode_batch_size, search.batch_wait_ms)
            backends[flavour] = (backend, batcher)
        backend, batcher = backends[flavour]
        searchers[name] = BackendSearcher(backend, method, name, batcher)
    return _journaled(searchers, journal)


def _journaled(searchers: dict[str, Any], journal: ResponseJournal | None) -> dict[str, Searcher]:
    if journal is None:
        return searchers
    return {name: JournaledSearcher(s, journal, s.identity) for name, s in searchers.items()}


def build_systems(
    specs: Mapping[str, SystemSpec],
    status: Mapping[str, str],
    *,
    settings: AnswerSettings,
    extractive: ExtractiveSettings,
    chat: JournaledChat | None,
    prompts: PromptSet,
    tool_schema: dict[str, Any],
    searchers: Mapping[str, Searcher],
) -> list[AnswerSystem]:
    """The evaluated systems, in conf order (a system whose status is not ``evaluated`` is not built).

    Raises:
        ValueError: When an LLM system has no chat, or a retrieval system's searcher is missing.
    """
    systems: list[AnswerSystem] = []
    feedback = settings.feedback.model_dump()
    for name, spec in specs.items():
        if status[name] != EVALUATED:
            continue
        searcher = searchers[spec.retriever] if spec.retriever is not None else None
        if spec.retriever is not None and searcher is None:
            raise ValueError(f"system {name!r}: no searcher for retriever {spec.retriever!r}")
        if spec.kind == "single_shot" and chat is None:
            prompt_hash = stamp({"extractive": extractive.model_dump(), "top_k": settings.top_k})
            systems.append(SingleShot(name, settings, None, None, prompt_hash, searcher, extractive))
            continue
        if chat is None:
            raise ValueError(f"system {name!r} ({spec.kind}) needs an LLM; no chat was given")
        if spec.kind == "closed_book":
            prompt = prompts.closed_book
            systems.append(ClosedBook(name, settings, chat, prompt, stamp({"prompt": prompt.sha256})))
        elif spec.kind == "single_shot":
            prompt = prompts.single_shot
            prompt_hash = stamp({"prompt": prompt.sha256, "passage_max_chars": settings.passage_max_chars})
            systems.append(SingleShot(name, settings, chat, prompt, prompt_hash, searcher, extractive))
        else:
            if settings.protocol == "function_calling":
                protocol: Any = FunctionCalling(prompts.agent, tool_schema, settings)
                payload = {"prompt": prompts.agent.sha256, "tool": tool_schema}
            else:
                protocol = TextTags(prompts.agent_text, settings)
                payload = {"prompt": prompts.agent_text.sha256}
            payload |= {
                "protocol": settings.protocol,
                "feedback": feedback,
                "passage_max_chars": settings.passage_max_chars,
            }
            systems.append(Agent(name, settings, chat, protocol, stamp(payload), searcher))
    return systems
