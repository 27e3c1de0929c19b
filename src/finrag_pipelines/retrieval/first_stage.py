"""Fusion of any set of first-stage retrievers: weighted min-max over the simplex, or a learned ranker.

* :func:`weighted_run`: ``Σ_r w_r · minmax_r(d)`` over the union of the runs' candidates (a document a run
  does not list gets that run's floor, 0), the same ranking as
  :func:`~finrag_pipelines.retrieval.fusion.weighted_sum` with min-max normalisation;
* :func:`tune_weights`: the weight vector of a grid over the simplex (step ``step``) with the best mean
  metric on the given queries;
* :func:`compare_by_cross_validation`: weighted tuning and a learned model (any trainer) scored on the same
  held-out folds of the tuning queries, so the two are compared on queries neither was fitted on;
* :class:`FusionSettings`: the artefact evaluation writes and the server reads: the retrievers, the tuned
  weights, the learned model (if any), which method won and the numbers that decided it.

Kedro-free library module.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from finrag_pipelines.retrieval.candidates import CandidateTable, QueryCandidates, ranked
from finrag_pipelines.retrieval.learned_fusion import FeatureBuilder, LearnedFusion
from finrag_pipelines.retrieval.metrics import query_metrics
from finrag_pipelines.retrieval.types import Run

KIND = "first_stage_fusion"
FORMAT_VERSION = 1
METHODS = ("weighted", "learned")

# per query: ranked doc ids → metric value (the query's judgements are bound inside)
QueryMetric = Callable[[Sequence[str]], float]


def simplex_grid(n: int, step: float) -> list[tuple[float, ...]]:
    """Every weight vector of ``n`` non-negative multiples of ``step`` that sum to 1.

    Raises:
        ValueError: If ``n < 1`` or ``1 / step`` is not a whole number.
    """
    parts = round(1.0 / step) if step > 0 else 0
    if n < 1 or parts < 1 or abs(parts * step - 1.0) > 1e-9:
        raise ValueError(f"need n >= 1 and a step that divides 1 (0.1, 0.05, 0.25), got n={n}, step={step}")
    return [
        tuple(c / parts for c in combo)
        for combo in itertools.product(range(parts + 1), repeat=n)
        if sum(combo) == parts
    ]


def _top_ids(candidates: QueryCandidates, scores: np.ndarray, depth: int) -> list[str]:
    order = np.lexsort((np.arange(len(scores)), -scores))[:depth]
    return [candidates.doc_ids[i] for i in order.tolist()]


def weighted_run(table: CandidateTable, weights: Mapping[str, float], depth: int) -> Run:
    """The weighted min-max fusion of the table's runs (weights by retriever name; others weigh 0)."""
    w = _weight_vector(table, weights)
    return [ranked(q.doc_ids, q.normalised @ w, depth) for q in table.queries]


def _weight_vector(table: CandidateTable, weights: Mapping[str, float]) -> np.ndarray:
    unknown = set(weights) - set(table.retrievers)
    if unknown:
        raise KeyError(f"weights name runs {sorted(unknown)} that the table lacks ({list(table.retrievers)})")
    return np.array([float(weights.get(name, 0.0)) for name in table.retrievers])


def tune_weights(
    table: CandidateTable,
    metrics: Sequence[QueryMetric],
    step: float,
    cutoff: int,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """The simplex weights with the best mean metric over the table's queries.

    Ties go to the vector closest to equal weights, then to the first in grid order.

    Args:
        table: Candidates of the tuning queries.
        metrics: One metric function per query of ``table``.
        step: Grid step over the simplex.
        cutoff: How many fused documents each metric sees.

    Returns:
        ``(weights by retriever, grid rows {"weights", "metric"})``.
    """
    if len(metrics) != len(table):
        raise ValueError(f"{len(metrics)} metric functions for {len(table)} queries")
    if not len(table):
        raise ValueError("no queries to tune fusion weights on")
    grid = simplex_grid(len(table.retrievers), step)
    means = _grid_scores(table, metrics, grid, cutoff).mean(axis=1)
    equal = np.full(len(table.retrievers), 1.0 / len(table.retrievers))
    best = min(
        range(len(grid)),
        key=lambda i: (-round(float(means[i]), 12), float(np.abs(np.array(grid[i]) - equal).sum()), i),
    )
    rows = [{"weights": dict(zip(table.retrievers, w)), "metric": float(m)} for w, m in zip(grid, means)]
    return dict(zip(table.retrievers, grid[best])), rows


def _grid_scores(
    table: CandidateTable, metrics: Sequence[QueryMetric], grid: Sequence[tuple[float, ...]], cutoff: int
) -> np.ndarray:
    """``(len(grid), n_queries)`` metric of every grid vector on every query."""
    weights = np.array(grid)  # (g, r)
    out = np.zeros((len(grid), len(table)))
    for j, (candidates, metric) in enumerate(zip(table.queries, metrics)):
        fused = candidates.normalised @ weights.T  # (docs, g)
        for i in range(len(grid)):
            out[i, j] = metric(_top_ids(candidates, fused[:, i], cutoff))
    return out


def folds_of(n: int, k: int, seed: int) -> list[np.ndarray]:
    """``k`` disjoint, seeded, near-equal folds of ``range(n)``.

    Raises:
        ValueError: If there are fewer items than folds.
    """
    if k < 2 or n < k:
        raise ValueError(f"cross-validation needs k >= 2 folds and at least k queries, got k={k}, n={n}")
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.array_split(order, k)]


@dataclass(frozen=True)
class CrossValidation:
    """Held-out-fold scores of the fusion methods on the tuning queries.

    Attributes:
        folds: Number of folds.
        per_method: Method → mean held-out metric over all tuning queries.
        per_query: Method → the held-out metric of every tuning query (tuning order).
    """

    folds: int
    per_method: dict[str, float]
    per_query: dict[str, list[float]] = field(repr=False)

    def winner(self) -> str:
        """The method with the best mean (``weighted`` on a tie: it is the simpler one)."""
        return max(self.per_method, key=lambda m: (round(self.per_method[m], 12), m == "weighted"))


def compare_by_cross_validation(
    table: CandidateTable,
    metrics: Sequence[QueryMetric],
    *,
    step: float,
    cutoff: int,
    folds: int,
    seed: int,
    learners: Mapping[str, Callable[[np.ndarray], Callable[[int, QueryCandidates], np.ndarray]]],
    repeats: int = 1,
) -> CrossValidation:
    """Score weighted tuning and each learner on held-out folds of the tuning queries.

    With ``repeats > 1`` the whole cross-validation is repeated with fold seeds ``seed, seed + 1, ...`` and
    each query's held-out scores are averaged, so the choice depends less on one fold assignment.

    Args:
        table: Candidates of the tuning queries.
        metrics: One metric function per query.
        step: Simplex grid step for the weighted method.
        cutoff: Documents each metric sees.
        folds: Number of folds.
        seed: Fold assignment seed (of the first repetition).
        learners: Name → a function that, given the training positions (into ``table``), returns a scorer
            ``(position, candidates) → candidate scores``. Each is trained on the other folds only.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    grid = simplex_grid(len(table.retrievers), step)
    grid_scores = _grid_scores(table, metrics, grid, cutoff)
    per_query: dict[str, np.ndarray] = {name: np.zeros(len(table)) for name in ("weighted", *learners)}
    for repeat in range(repeats):
        for held_out in folds_of(len(table), folds, seed + repeat):
            train = np.setdiff1d(np.arange(len(table)), held_out)
            best = int(np.argmax(grid_scores[:, train].mean(axis=1)))
            per_query["weighted"][held_out] += grid_scores[best, held_out] / repeats
            for name, learn in learners.items():
                scorer = learn(train)
                for p in held_out.tolist():
                    candidates = table.queries[p]
                    value = metrics[p](_top_ids(candidates, scorer(p, candidates), cutoff))
                    per_query[name][p] += value / repeats
    return CrossValidation(
        folds,
        {name: float(values.mean()) for name, values in per_query.items()},
        {name: values.tolist() for name, values in per_query.items()},
    )


def metric_functions(
    relevance: Sequence[Mapping[str, int]], metric: str, ks: Sequence[int], cutoff: int
) -> list[QueryMetric]:
    """One ``ranked ids → metric`` function per query (``metric`` one of ``query_metrics``' names)."""
    return [lambda ids, rel=rel: query_metrics(ids, rel, ks, cutoff)[metric] for rel in relevance]


@dataclass(frozen=True)
class FusionSettings:
    """How to fuse named first-stage runs: the artefact evaluation writes (JSON) and the server reads.

    Attributes:
        retrievers: The runs fused, in column order.
        method: The method that won on the tune split (``weighted`` or ``learned``); what ``fusion`` uses.
        weights: The weighted method's weights by retriever.
        depth: Candidates per retriever that are fused, and the length of a fused list.
        learned: The learned model, or ``None`` when none was trained.
        selection: The numbers behind the choice (tuning queries, cross-validation, grid, ...).
        source: Where the settings came from (tuned on which split of which set, or fixed from a file).
    """

    retrievers: tuple[str, ...]
    method: str
    weights: dict[str, float]
    depth: int
    learned: LearnedFusion | None = None
    selection: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"fusion method must be one of {METHODS}, got {self.method!r}")
        if self.method == "learned" and self.learned is None:
            raise ValueError("fusion method 'learned' needs a learned model")
        if set(self.weights) - set(self.retrievers):
            raise ValueError(
                f"weights name {sorted(set(self.weights) - set(self.retrievers))} not in retrievers"
            )
        if self.learned is not None and self.learned.retrievers != self.retrievers:
            raise ValueError(
                f"the learned model reads {self.learned.retrievers} but the settings fuse {self.retrievers}"
            )

    @property
    def views(self) -> tuple[str, ...]:
        """The lexical views (index tokenizers) the learned model needs; empty without one."""
        return self.learned.views if self.learned is not None else ()

    def fuse(
        self,
        runs: Mapping[str, Run],
        queries: Sequence[str],
        features: FeatureBuilder | None = None,
        method: str | None = None,
    ) -> Run:
        """Fuse the runs of these retrievers for these queries.

        Args:
            runs: Retriever name → run (same queries, same order); must hold every retriever.
            queries: The query texts (features of the learned method).
            features: The feature builder (needed by the learned method).
            method: ``weighted``, ``learned`` or ``None`` for the winning one.

        Raises:
            KeyError: If a retriever's run is missing.
            ValueError: If the learned method is asked for without a model or feature builder.
        """
        chosen = method or self.method
        missing = [name for name in self.retrievers if name not in runs]
        if missing:
            raise KeyError(f"fusion needs the runs of {missing} (it fuses {list(self.retrievers)})")
        table = CandidateTable.from_runs({name: runs[name] for name in self.retrievers}, self.depth)
        if chosen == "weighted":
            return weighted_run(table, self.weights, self.depth)
        if chosen != "learned" or self.learned is None or features is None:
            raise ValueError(
                f"fusion method {chosen!r} cannot run: learned needs a trained model and a feature builder "
                f"(model: {self.learned is not None}, features: {features is not None})"
            )
        if features.views != self.learned.views:
            raise ValueError(
                f"the learned model reads views {self.learned.views}, the builder has {features.views}"
            )
        matrices = features.features(table, queries)
        scores = self.learned.score(np.vstack(matrices)) if matrices else np.zeros(0)  # one predict call
        bounds = np.cumsum([0, *(len(x) for x in matrices)])
        return [
            ranked(q.doc_ids, scores[start:end], self.depth)
            for q, start, end in zip(table.queries, bounds[:-1], bounds[1:])
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (the artefact)."""
        return {
            "kind": KIND,
            "format_version": FORMAT_VERSION,
            "retrievers": list(self.retrievers),
            "method": self.method,
            "weights": dict(self.weights),
            "depth": self.depth,
            "learned": self.learned.to_dict() if self.learned is not None else None,
            "selection": self.selection,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "fusion settings") -> FusionSettings:
        """Restore and check the artefact.

        Raises:
            ValueError: Naming ``where`` and what is wrong, with the command that rewrites it.
        """
        hint = "rerun `kedro run --pipelines evaluation` on the set the settings are tuned on"
        if not isinstance(data, Mapping) or data.get("kind") != KIND:
            raise ValueError(
                f"{where}: not first-stage fusion settings (kind {dict(data or {}).get('kind')!r}); {hint}"
            )
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{where}: format_version {data.get('format_version')!r}, this code reads "
                f"{FORMAT_VERSION}; {hint}"
            )
        try:
            learned = LearnedFusion.from_dict(data["learned"]) if data.get("learned") else None
            return cls(
                tuple(data["retrievers"]),
                str(data["method"]),
                {str(k): float(v) for k, v in dict(data["weights"]).items()},
                int(data["depth"]),
                learned,
                dict(data.get("selection") or {}),
                str(data.get("source") or ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {type(exc).__name__}: {exc}; {hint}") from exc
