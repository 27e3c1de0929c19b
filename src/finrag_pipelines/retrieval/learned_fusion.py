"""Learned fusion of first-stage retrievers: per-candidate features and a LightGBM lambdarank model.

Features of one (query, candidate document) pair, from a :class:`~.candidates.CandidateTable` row:

* per retriever ``r``: ``r:score`` (raw, missing when ``r`` does not list the document), ``r:rank``
  (missing likewise), ``r:rr`` (1 / rank, 0 when not listed) and ``r:norm`` (min-max normalised score,
  0 when not listed);
* per lexical view ``v`` (the tokenizer of a lexical index, e.g. the word index's jieba tokenizer and the
  n-gram index's bigrams): ``v:coverage`` (share of the query's distinct tokens found in the document),
  ``v:matched`` (their number), ``v:domain_matched`` (the query's dictionary domain terms found in the
  document) and ``v:query_domain_terms``;
* ``query_chars``, ``doc_chars``, ``n_listed`` (how many retrievers list the document) and ``mean_norm``.

LightGBM treats missing values (``NaN``) natively. The model is kept as LightGBM's own text format inside
:class:`LearnedFusion`, so it travels in a JSON artefact and loads without pickle. ``lightgbm`` is imported
only when a model is trained or applied.

Kedro-free library module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from finrag_pipelines.retrieval.candidates import CandidateTable, QueryCandidates
from finrag_pipelines.text.tokenizers import Tokenizer

PER_RETRIEVER = ("score", "rank", "rr", "norm")
PER_VIEW = ("coverage", "matched", "domain_matched", "query_domain_terms")
GLOBAL = ("query_chars", "doc_chars", "n_listed", "mean_norm")


def feature_names(retrievers: Sequence[str], views: Sequence[str]) -> list[str]:
    """The feature columns, in order, for these retrievers and lexical views."""
    return (
        [f"{r}:{f}" for r in retrievers for f in PER_RETRIEVER]
        + [f"{v}:{f}" for v in views for f in PER_VIEW]
        + list(GLOBAL)
    )


class FeatureBuilder:
    """Computes the feature matrix of each query's candidates.

    Document token sets are computed on first use per view and cached, so a document shared by many
    queries is tokenised once.

    Args:
        doc_texts: Document id → the indexed text (title + body, as the indexes saw it).
        views: Lexical view name → the tokenizer of that view (the lexical index's own tokenizer).
    """

    def __init__(self, doc_texts: Mapping[str, str], views: Mapping[str, Tokenizer]) -> None:
        self._doc_texts = doc_texts
        self._views = dict(views)
        self._doc_tokens: dict[str, dict[str, frozenset[str]]] = {name: {} for name in self._views}

    @property
    def views(self) -> tuple[str, ...]:
        """The lexical view names, in feature order."""
        return tuple(self._views)

    def _tokens(self, view: str, doc_ids: Sequence[str]) -> list[frozenset[str]]:
        cache = self._doc_tokens[view]
        missing = [d for d in dict.fromkeys(doc_ids) if d not in cache]
        if missing:
            unknown = [d for d in missing if d not in self._doc_texts]
            if unknown:
                raise KeyError(
                    f"candidate documents {unknown[:5]} have no text; the runs and the corpus differ"
                )
            texts = [self._doc_texts[d] for d in missing]
            for doc_id, tokens in zip(missing, self._views[view].tokenize_many(texts)):
                cache[doc_id] = frozenset(tokens)
        return [cache[d] for d in doc_ids]

    def prefetch(self, doc_ids: Sequence[str]) -> None:
        """Tokenise these documents for every view now (one batched call per view)."""
        for view in self._views:
            self._tokens(view, doc_ids)

    def query_features(self, candidates: QueryCandidates, query: str) -> np.ndarray:
        """``(n_candidates, n_features)`` for one query, columns as :func:`feature_names`."""
        if not candidates.doc_ids:  # no retriever found anything
            n_runs = candidates.scores.shape[1]
            return np.zeros((0, len(PER_RETRIEVER) * n_runs + len(PER_VIEW) * len(self._views) + len(GLOBAL)))
        ranks = candidates.ranks
        per_retriever = np.stack(
            [
                candidates.scores,
                ranks,
                np.where(np.isnan(ranks), 0.0, 1.0 / np.where(np.isnan(ranks), 1, ranks)),
                candidates.normalised,
            ],
            axis=2,
        ).reshape(len(candidates.doc_ids), -1)
        columns = [per_retriever]
        for view, tokenizer in self._views.items():
            q_tokens = frozenset(tokenizer.tokenize(query))
            q_domain = frozenset(t for t in q_tokens if tokenizer.is_domain_term(t))
            docs = self._tokens(view, candidates.doc_ids)
            matched = np.array([len(q_tokens & d) for d in docs], dtype=np.float64)
            domain = np.array([len(q_domain & d) for d in docs], dtype=np.float64)
            coverage = matched / max(1, len(q_tokens))
            columns.append(
                np.stack([coverage, matched, domain, np.full_like(matched, len(q_domain))], axis=1)
            )
        doc_chars = np.array([len(self._doc_texts[d]) for d in candidates.doc_ids], dtype=np.float64)
        listed = (~np.isnan(ranks)).sum(axis=1).astype(np.float64)
        columns.append(
            np.stack(
                [np.full_like(doc_chars, len(query)), doc_chars, listed, candidates.normalised.mean(axis=1)],
                axis=1,
            )
        )
        return np.hstack(columns)

    def features(self, table: CandidateTable, queries: Sequence[str]) -> list[np.ndarray]:
        """One feature matrix per query of ``table`` (``queries`` are their texts, in table order)."""
        if len(queries) != len(table):
            raise ValueError(f"{len(queries)} query texts for a candidate table of {len(table)} queries")
        self.prefetch([d for q in table.queries for d in q.doc_ids])
        return [self.query_features(q, text) for q, text in zip(table.queries, queries)]


@dataclass(frozen=True)
class LearnedFusion:
    """A trained LightGBM ranker over the features of named retrievers and lexical views.

    Attributes:
        retrievers: The runs it reads, in feature order.
        views: The lexical views (tokenizers) it reads, in feature order.
        model: LightGBM's text dump of the booster.
        params: The training parameters (for the record).
        trained_on: What it was trained on (queries per source, candidates, positives).
    """

    retrievers: tuple[str, ...]
    views: tuple[str, ...]
    model: str
    params: dict[str, Any] = field(default_factory=dict)
    trained_on: dict[str, Any] = field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        """Feature columns, in order."""
        return feature_names(self.retrievers, self.views)

    @cached_property
    def _booster(self) -> Any:
        import lightgbm

        booster = lightgbm.Booster(model_str=self.model)
        if booster.num_feature() != len(self.feature_names):
            raise ValueError(
                f"the LightGBM model expects {booster.num_feature()} features but retrievers "
                f"{self.retrievers} and views {self.views} give {len(self.feature_names)}; the fusion "
                "settings are inconsistent, "
                "rerun the evaluation that wrote them"
            )
        return booster

    def score(self, features: np.ndarray) -> np.ndarray:
        """Model scores of candidate rows (higher is better)."""
        if features.shape[0] == 0:
            return np.zeros(0)
        return np.asarray(self._booster.predict(features), dtype=np.float64)

    @classmethod
    def fit(
        cls,
        features: Sequence[np.ndarray],
        labels: Sequence[np.ndarray],
        *,
        retrievers: Sequence[str],
        views: Sequence[str],
        params: Mapping[str, Any],
        trained_on: Mapping[str, Any] | None = None,
    ) -> LearnedFusion:
        """Train a lambdarank model, one group per query.

        Args:
            features: Per query, ``(n_candidates, n_features)``.
            labels: Per query, the relevance grade of each candidate (0 = not relevant).
            retrievers: Retriever names of the feature columns.
            views: Lexical view names of the feature columns.
            params: ``lightgbm.LGBMRanker`` keyword arguments (objective lambdarank is set here).
            trained_on: A description of the training data, kept with the model.

        Raises:
            ValueError: If no query has a relevant candidate, or shapes disagree.
        """
        import lightgbm

        if len(features) != len(labels):
            raise ValueError(f"{len(features)} feature matrices but {len(labels)} label vectors")
        keep = [i for i, y in enumerate(labels) if len(y) and np.max(y) > 0]
        if not keep:
            raise ValueError(
                "no training query has a relevant document among its candidates; lambdarank cannot learn. "
                "Check the qrels and the retrievers' depth."
            )
        width = len(feature_names(retrievers, views))
        bad = [i for i in keep if features[i].shape[1] != width]
        if bad:
            raise ValueError(f"feature matrices {bad[:3]} do not have {width} columns")
        ranker = lightgbm.LGBMRanker(objective="lambdarank", **dict(params))
        ranker.fit(
            np.vstack([features[i] for i in keep]),
            np.concatenate([labels[i] for i in keep]).astype(np.int64),
            group=[len(labels[i]) for i in keep],
        )
        described = dict(trained_on or {})
        described.update(
            queries_with_a_positive=len(keep),
            queries_without=len(labels) - len(keep),
            candidates=int(sum(len(labels[i]) for i in keep)),
        )
        return cls(
            tuple(retrievers), tuple(views), ranker.booster_.model_to_string(), dict(params), described
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (the model as LightGBM text)."""
        return {
            "retrievers": list(self.retrievers),
            "views": list(self.views),
            "feature_names": self.feature_names,
            "params": self.params,
            "trained_on": self.trained_on,
            "model": self.model,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LearnedFusion:
        """Restore from :meth:`to_dict`.

        Raises:
            ValueError: If a key is missing or the recorded feature names differ from the ones this code
                computes (the model was trained by other code).
        """
        try:
            out = cls(
                tuple(data["retrievers"]),
                tuple(data["views"]),
                str(data["model"]),
                dict(data.get("params") or {}),
                dict(data.get("trained_on") or {}),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(
                f"learned fusion settings lack {exc}; rerun the evaluation that wrote them"
            ) from exc
        if list(data.get("feature_names", out.feature_names)) != out.feature_names:
            raise ValueError(
                "the learned fusion model was trained on other features than this code computes; retrain it "
                "(rerun the evaluation on the set it was tuned on)"
            )
        return out

    def __repr__(self) -> str:
        return (
            f"LearnedFusion(retrievers={self.retrievers}, views={self.views}, trained_on={self.trained_on})"
        )
