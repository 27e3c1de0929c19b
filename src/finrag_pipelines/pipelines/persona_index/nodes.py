"""persona_index nodes: finance personas from Persona Hub lines → deduplicated table → FAISS index.

The persona text that is embedded (and later shown to the LLM) is the column ``persona_text``: the English
persona unchanged, or its Chinese translation through the shared ``llm`` when ``translate.enabled`` is set.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from finrag_pipelines.embedding.distributed import encode_with_execution
from finrag_pipelines.embedding.encoders import Encoder
from finrag_pipelines.embedding.store import EmbeddingStore, encode_with_store
from finrag_pipelines.execution import ExecutionConfig
from finrag_pipelines.llm.batch import ChatRequest, check_failure_rate, run_chat_batch
from finrag_pipelines.llm.client import client_factory
from finrag_pipelines.llm.config import LLMConfig
from finrag_pipelines.llm.journal import ResponseJournal
from finrag_pipelines.llm.parsing import clean_text_output
from finrag_pipelines.llm.prompts import PromptTemplate
from finrag_pipelines.pipelines.persona_index.params import (
    DedupParams,
    EncodeParams,
    FilterParams,
    IndexParams,
    SampleParams,
    TranslateParams,
)
from finrag_pipelines.pipelines.persona_index.selection import (
    KeywordMatcher,
    PersonaFormatError,
    greedy_near_duplicates,
    parse_persona,
)
from finrag_pipelines.project_paths import portable_values
from finrag_pipelines.retrieval.dense import DenseIndex
from finrag_pipelines.retrieval.interfaces import VectorIndex
from finrag_pipelines.text.corpus import SourceRow, corpus_hash

logger = logging.getLogger(__name__)

_HAN = re.compile(r"[\u4e00-\u9fff]")

PERSONA_COLUMNS = ["persona_id", "persona", "source"]
FINAL_COLUMNS = ["persona_id", "persona", "persona_text", "source"]


def load_personas(personas_raw: list[SourceRow]) -> pd.DataFrame:
    """Validate every ``{"persona": ...}`` row into ``persona_id, persona, source``;
    exact duplicates are removed.

    Raises:
        PersonaFormatError: naming file and line for a malformed row, or when the file has no persona.
    """
    first: dict[str, Any] = {}
    duplicates = 0
    for row in personas_raw:
        persona = parse_persona(row)
        seen = first.get(persona.persona_id)
        if seen is None:
            first[persona.persona_id] = persona
        elif seen.persona == persona.persona:
            duplicates += 1
        else:
            raise PersonaFormatError(
                f"{persona.source}: persona id {persona.persona_id} collides with {seen.source} "
                "(different texts)"
            )
    if not first:
        raise PersonaFormatError("the persona file has no personas")
    table = pd.DataFrame(
        [(p.persona_id, p.persona, p.source) for p in first.values()], columns=PERSONA_COLUMNS
    )
    logger.info(
        "persona_index: %d persona rows, %d exact duplicates removed, %d unique",
        len(personas_raw),
        duplicates,
        len(table),
    )
    return table


def filter_personas(personas: pd.DataFrame, params: FilterParams) -> pd.DataFrame:
    """Keep personas that mention a finance keyword; the column ``keywords`` lists the ones found."""
    matcher = KeywordMatcher(params.keywords_en, params.en_suffixes, params.keywords_zh)
    found = [matcher.match(text) for text in personas["persona"]]
    matched = personas.assign(keywords=found)[[bool(kws) for kws in found]].reset_index(drop=True)
    counts = Counter(kw for kws in found for kw in kws)
    if matched.empty:
        raise ValueError(
            f"no persona of {len(personas)} matches any finance keyword; "
            "check persona_index.filter.keywords_en/_zh"
        )
    logger.info(
        "persona_index: %d of %d personas match a finance keyword; per keyword: %s; never matched: %s",
        len(matched),
        len(personas),
        dict(counts.most_common()),
        [kw for kw in matcher.keywords if not counts[kw]] or "none",
    )
    return matched


def sample_personas(personas: pd.DataFrame, params: SampleParams) -> pd.DataFrame:
    """Keep a seeded random subset of at most ``max_personas`` rows (input order kept); null keeps all."""
    if params.max_personas is None or params.max_personas >= len(personas):
        return personas
    rows = np.sort(
        np.random.default_rng(params.seed).choice(len(personas), size=params.max_personas, replace=False)
    )
    logger.info("persona_index: sampled %d of %d personas (seed %d)", len(rows), len(personas), params.seed)
    return personas.iloc[rows].reset_index(drop=True)


def _chinese_translation(text: str) -> str:
    translated = clean_text_output(text).strip()
    if not translated or not _HAN.search(translated):
        raise ValueError(f"not a Chinese translation: {translated!r:.40}")
    return translated


def translate_personas(
    personas: pd.DataFrame,
    llm: LLMConfig,
    llm_credentials: dict[str, Any],
    llm_journal: ResponseJournal,
    translate_prompt: dict[str, Any],
    translate: TranslateParams,
) -> pd.DataFrame:
    """Set ``persona_text``: the persona itself, or (``translate.enabled``) its Chinese translation.

    A persona whose translation failed keeps its English text and says why in ``translation_error``;
    the run fails when more than ``llm.max_failure_rate`` of them failed.
    """
    if not translate.enabled:
        return personas.assign(persona_text=personas["persona"], translation_error=None)
    if llm.backend != "openai":
        raise ValueError(
            "persona_index.translate.enabled needs an LLM: "
            "set llm.backend=openai (and llm.base_url, llm.model), "
            f"or turn translation off; llm.backend is {llm.backend!r}"
        )
    prompt = PromptTemplate.from_mapping(translate_prompt, source="conf prompts/persona_translate.yml")
    requests = [
        ChatRequest(id=pid, messages=prompt.render(persona=text))
        for pid, text in zip(personas["persona_id"], personas["persona"])
    ]
    results = run_chat_batch(
        requests,
        client_factory=client_factory(llm, llm_credentials),
        journal=llm_journal,
        config=llm,
        validate=_chinese_translation,
        desc="translate personas",
    )
    failed = [r for r in results if r.error is not None]
    logger.info(
        "persona_index: translated %d personas, %d kept their English text",
        len(results) - len(failed),
        len(failed),
    )
    check_failure_rate(len(failed), len(results), llm.max_failure_rate, "persona translations")
    by_id = {r.id: r for r in results}
    return personas.assign(
        persona_text=[
            by_id[p].value if by_id[p].error is None else t
            for p, t in zip(personas["persona_id"], personas["persona"])
        ],
        translation_error=[by_id[p].error for p in personas["persona_id"]],
    )


def deduplicate_personas(
    personas: pd.DataFrame,
    encoder: Encoder,
    embedding_store: EmbeddingStore,
    params: DedupParams,
    encode: EncodeParams,
    execution: ExecutionConfig | None = None,
) -> pd.DataFrame:
    """Decide ``kept`` or ``near_duplicate`` per persona by embedding cosine, greedily in input order.

    This is where every candidate persona is encoded (``execution.backend: ray`` spreads that over a Ray actor
    pool; the store and the vectors are the same); later steps read the vectors back from the store.

    Returns an audit table ``persona_id, status, kept_as, cosine``: ``kept_as`` is the kept persona that
    represents a duplicate (itself when kept); ``cosine`` the highest cosine to a persona kept before it.
    """
    vectors = encode_with_execution(
        encoder, list(personas["persona_text"]), "document", embedding_store, encode.chunk_size, execution
    )
    kept_as, cosine = greedy_near_duplicates(vectors, params.cosine, params.block_size)
    ids = personas["persona_id"].to_numpy()
    audit = pd.DataFrame(
        {
            "persona_id": ids,
            "status": np.where(kept_as == np.arange(len(ids)), "kept", "near_duplicate"),
            "kept_as": ids[kept_as],
            "cosine": cosine,
        }
    )
    dropped = audit[audit["status"] == "near_duplicate"]
    text = dict(zip(personas["persona_id"], personas["persona_text"]))
    logger.info(
        "persona_index: %d near duplicates (cosine >= %s) dropped, %d kept; e.g. %s",
        len(dropped),
        params.cosine,
        len(audit) - len(dropped),
        [
            f"{text[r.persona_id]!r:.60} ~ {text[r.kept_as]!r:.60} ({r.cosine:.3f})"
            for r in dropped.head(3).itertuples()
        ],
    )
    return audit


def select_personas(personas: pd.DataFrame, dedup_audit: pd.DataFrame) -> pd.DataFrame:
    """Keep the personas the audit marked ``kept``, in input order:
    ``persona_id, persona, persona_text, source``."""
    kept = set(dedup_audit.loc[dedup_audit["status"] == "kept", "persona_id"])
    return personas.loc[personas["persona_id"].isin(kept), FINAL_COLUMNS].reset_index(drop=True)


def build_persona_index(
    personas: pd.DataFrame,
    encoder: Encoder,
    embedding_store: EmbeddingStore,
    params: IndexParams,
    encode: EncodeParams,
) -> DenseIndex:
    """Index the kept personas' ``persona_text`` vectors (read back from the embedding store)."""
    ids, texts = [str(p) for p in personas["persona_id"]], list(personas["persona_text"])
    vectors = encode_with_store(encoder, texts, "document", embedding_store, encode.chunk_size)
    # meta.json names paths under the project relative to it, never the machine's absolute paths
    meta = portable_values({**encoder.describe(), "fingerprint": encoder.fingerprint})
    return DenseIndex.build(
        ids,
        vectors,
        meta,
        corpus_hash(ids, texts),
        index_type=params.index_type,
        hnsw_m=params.hnsw_m,
        ef_search=params.ef_search,
    )


def summarise_persona_index(
    personas_raw: list[SourceRow],
    personas: pd.DataFrame,
    matched: pd.DataFrame,
    dedup_audit: pd.DataFrame,
    persona_index: VectorIndex,
) -> dict[str, Any]:
    """Counts for the record: rows read, exact duplicates, matches per keyword, near duplicates,
    kept, encoder."""
    per_keyword = Counter(str(kw) for kws in matched["keywords"] for kw in kws)
    meta = persona_index.meta
    return {
        "rows": len(personas_raw),
        "exact_duplicates": len(personas_raw) - len(personas),
        "unique": len(personas),
        "matched": len(matched),
        "matched_by_keyword": dict(per_keyword.most_common()),
        "sampled": len(dedup_audit),
        "near_duplicates": int((dedup_audit["status"] == "near_duplicate").sum()),
        "kept": int((dedup_audit["status"] == "kept").sum()),
        "encoder": meta["encoder"],
        "index": {key: meta.get(key) for key in ("index_type", "num_docs", "dim", "corpus_hash", "built_at")},
    }
