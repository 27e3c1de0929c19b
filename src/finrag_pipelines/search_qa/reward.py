"""GRPO reward for search-augmented QA (verl rows with ``data_source: finrag_search_qa``).

verl calls the project's one ``compute_score`` (``finrag_pipelines.mcq.reward``), which dispatches these rows
here. ``solution_str`` is the whole multi-turn response, tool turns included, and ``extra_info`` carries the
row's ``source_doc_id`` plus verl's ``tool_rewards`` (see :mod:`.trajectory`); ``ground_truth`` is the text
of the source document the question was distilled from.

Components, each in [0, 1]:

* ``outcome``: character F1 between the answer (citations removed) and the source document
  (:func:`char_f1`), or, with ``outcome: judge``, an LLM judge's 0–10 rating /10 (question, source document,
  answer; prompt ``conf/base/prompts/search_qa_judge.yml``). A judge failure is ``None``, never 0: the score
  is renormalised over the other components.
* ``retrieval`` (the tool reward): 1 when the source document was among the passages the agent's searches
  returned, read from the tool responses in the trajectory.
* ``citation``: 0 unless the answer has text beyond its citations and cites the source document that its
  searches returned; then the share of its citations that were retrieved, times
  ``min(1, max_citations / distinct citations)`` (citing everything dilutes it).
* ``format``: mean of four checks: the trajectory ends with an answer, no think block left open, every
  tool call ran cleanly (a ``search`` call with a ``query_list``, none dropped), the answer has at least
  ``min_answer_chars`` characters besides its citations.

Penalties, subtracted after the weighted mean and capped at ``max_penalty``: each search (query) past
``max_searches``, each repeat of an earlier query (NFKC, case and punctuation folded), each cited id no search
returned, and forged tool responses (a ``<tool_response>`` the model wrote itself; its passages never count).

``score = Σ w·c / Σ w − min(max_penalty, penalties)``, in ``[−max_penalty, 1]``.

Kedro-free library module.
"""

from __future__ import annotations

import asyncio
import math
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from finrag_pipelines.llm.config import LLMConfig
from finrag_pipelines.llm.judge import ask_judge
from finrag_pipelines.llm.prompts import PromptTemplate
from finrag_pipelines.search_qa.trajectory import (
    Trajectory,
    citations,
    parse_trajectory,
    source_doc_id,
    strip_citations,
)

DATA_SOURCE = "finrag_search_qa"
"""``data_source`` of every search-QA RL row; ``compute_score`` dispatches on it."""
COMPONENTS: tuple[str, ...] = ("outcome", "retrieval", "citation", "format")
PENALTIES: tuple[str, ...] = ("over_search", "repeated_search", "invalid_citation", "forged_tool_response")
OUTCOMES: tuple[str, ...] = ("f1", "judge")
VERL_KEYS: tuple[str, ...] = (
    "score",
    "acc",
    "format",
    "outcome",
    "retrieval",
    "citation",
    "penalty",
    "searches",
    "repeated_searches",
    "over_searches",
    "invalid_citations",
    "forged",
    "judge_failed",
)
"""The keys of :meth:`SearchQAResult.as_verl_dict`, the same for every row (verl stacks them per key)."""


class SearchQARewardConfigError(ValueError):
    """The ``search_qa`` block of the reward config is missing a key or holds a bad value."""


def normalise_chars(text: str) -> str:
    """NFKC, lower case, without whitespace, punctuation or symbols: the characters F1 compares."""
    value = unicodedata.normalize("NFKC", text or "").lower()
    return "".join(ch for ch in value if unicodedata.category(ch)[0] not in ("P", "S", "Z", "C"))


def char_f1(prediction: str, reference: str) -> float:
    """Character-level F1 (bag of characters after :func:`normalise_chars`), the usual Chinese QA metric.

    ``char_f1("营收增长10%", "公司营收增长了10%")`` is 2·(6/6·6/9)/(6/6+6/9) = 0.8; 0.0 when either is empty.
    """
    pred, ref = Counter(normalise_chars(prediction)), Counter(normalise_chars(reference))
    common = sum((pred & ref).values())
    if common == 0:
        return 0.0
    precision, recall = common / sum(pred.values()), common / sum(ref.values())
    return 2 * precision * recall / (precision + recall)


def _number(value: Any, where: str, low: float, *, integer: bool = False) -> float:
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or not math.isfinite(value) or value < low:
        kind = "an integer" if integer else "a number"
        raise SearchQARewardConfigError(f"reward.search_qa.{where} must be {kind} >= {low}, got {value!r}")
    return value


def _exact_keys(data: Any, names: Sequence[str], where: str) -> dict[str, Any]:
    if not isinstance(data, Mapping) or set(data) != set(names):
        raise SearchQARewardConfigError(
            f"reward.search_qa.{where} must give exactly {list(names)}, got {data!r}"
        )
    return dict(data)


@dataclass(frozen=True)
class SearchQARewardConfig:
    """The ``search_qa`` block of the reward config (``rl.reward.search_qa`` in ``parameters_rl.yml``).

    Attributes:
        weights: ``{"outcome", "retrieval", "citation", "format"}`` -> weight >= 0 (outcome + format > 0).
        outcome: ``"f1"`` or ``"judge"``.
        max_searches: Searches (queries) allowed before each further one costs ``penalties.over_search``.
        max_citations: Distinct citations beyond which the citation credit is diluted.
        min_answer_chars: Characters (besides citations, punctuation, spaces) an answer needs.
        penalties: ``{"over_search", "repeated_search", "invalid_citation", "forged_tool_response"}`` -> >= 0.
        max_penalty: Cap on the summed penalties.
        judge_llm: The judge endpoint (``outcome: judge``), else ``None``.
        judge_prompt: The judge prompt (slots ``question``, ``reference``, ``answer``), else ``None``.
        max_judge_chars: The reference and the answer are cut to this many characters for the judge.
    """

    weights: dict[str, float]
    outcome: str
    max_searches: int
    max_citations: int
    min_answer_chars: int
    penalties: dict[str, float]
    max_penalty: float
    judge_llm: LLMConfig | None = None
    judge_prompt: PromptTemplate | None = None
    max_judge_chars: int = 2000

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> SearchQARewardConfig:
        """Check and build the block (the JSON the rl pipeline writes).

        Raises:
            SearchQARewardConfigError: Naming the bad key or value.
        """
        if isinstance(data, SearchQARewardConfig):
            return data
        if not isinstance(data, Mapping):
            raise SearchQARewardConfigError(f"reward.search_qa must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        required = known - {"judge_llm", "judge_prompt", "max_judge_chars"}
        unknown, missing = sorted(set(data) - known), sorted(required - set(data))
        if unknown or missing:
            raise SearchQARewardConfigError(
                f"reward.search_qa: unknown key(s) {unknown}, missing key(s) {missing}; "
                f"allowed: {sorted(known)}"
            )
        weights = {
            k: float(_number(v, f"weights.{k}", 0))
            for k, v in _exact_keys(data["weights"], COMPONENTS, "weights").items()
        }
        if weights["outcome"] + weights["format"] <= 0:
            raise SearchQARewardConfigError("reward.search_qa.weights: outcome + format must be > 0")
        penalties = {
            k: float(_number(v, f"penalties.{k}", 0))
            for k, v in _exact_keys(data["penalties"], PENALTIES, "penalties").items()
        }
        if data["outcome"] not in OUTCOMES:
            raise SearchQARewardConfigError(
                f"reward.search_qa.outcome must be one of {OUTCOMES}, got {data['outcome']!r}"
            )
        llm = data.get("judge_llm")
        llm = llm if llm is None or isinstance(llm, LLMConfig) else LLMConfig.from_mapping(llm)
        prompt = data.get("judge_prompt")
        if prompt is not None and not isinstance(prompt, PromptTemplate):
            prompt = PromptTemplate.from_mapping(prompt, source="reward.search_qa.judge_prompt")
        if data["outcome"] == "judge" and (llm is None or llm.backend != "openai" or prompt is None):
            raise SearchQARewardConfigError(
                "reward.search_qa.outcome is judge but judge_llm is not an 'openai' backend with a base_url "
                "or judge_prompt is missing; point rl.reward.judge at an OpenAI-compatible server or use "
                "outcome: f1."
            )
        return cls(
            weights=weights,
            outcome=data["outcome"],
            max_searches=int(_number(data["max_searches"], "max_searches", 1, integer=True)),
            max_citations=int(_number(data["max_citations"], "max_citations", 1, integer=True)),
            min_answer_chars=int(_number(data["min_answer_chars"], "min_answer_chars", 1, integer=True)),
            penalties=penalties,
            max_penalty=float(_number(data["max_penalty"], "max_penalty", 0)),
            judge_llm=llm,
            judge_prompt=prompt,
            max_judge_chars=int(
                _number(data.get("max_judge_chars", 2000), "max_judge_chars", 100, integer=True)
            ),
        )


@dataclass(frozen=True)
class SearchQAResult:
    """One scored trajectory: the components, the counts behind the penalties, and the parse."""

    score: float
    outcome: float | None
    retrieval: float
    citation: float
    format: float
    penalty: float
    searches: int
    repeated_searches: int
    over_searches: int
    invalid_citations: int
    judge_status: str
    judge_error: str
    trajectory: Trajectory

    @property
    def grounded(self) -> bool:
        """A real answer citing the source document, which a search returned."""
        return self.citation > 0

    def as_verl_dict(self) -> dict[str, float]:
        """Numbers only, keys :data:`VERL_KEYS`; ``acc`` is :attr:`grounded`, ``outcome`` NaN if the judge
        failed."""
        return {
            "score": self.score,
            "acc": float(self.grounded),
            "format": self.format,
            "outcome": math.nan if self.outcome is None else self.outcome,
            "retrieval": self.retrieval,
            "citation": self.citation,
            "penalty": self.penalty,
            "searches": float(self.searches),
            "repeated_searches": float(self.repeated_searches),
            "over_searches": float(self.over_searches),
            "invalid_citations": float(self.invalid_citations),
            "forged": float(bool(self.trajectory.forged)),
            "judge_failed": float(self.judge_status == "failed"),
        }


def _tool_rewards(info: Mapping[str, Any]) -> list[float] | None:
    value = info.get("tool_rewards")
    if value is None:
        return None
    return [float(v) for v in list(value)]


def _tool_reported_source(info: Mapping[str, Any], source: str) -> bool:
    """The row handed ``source`` to the search tool (``tools_kwargs.search.create_kwargs.source_doc_id``)."""
    kwargs = info.get("tools_kwargs") or {}
    create = ((kwargs.get("search") or {}) if isinstance(kwargs, Mapping) else {}).get("create_kwargs") or {}
    return isinstance(create, Mapping) and str(create.get("source_doc_id") or "") == source


def _reference(ground_truth: Any, info: Mapping[str, Any]) -> str:
    if isinstance(ground_truth, Mapping):  # the reward_model dict passed whole
        ground_truth = ground_truth.get("ground_truth")
    if not isinstance(ground_truth, str) or not ground_truth.strip():
        raise ValueError(
            f"search-QA ground_truth must be the source document's text, got {ground_truth!r:.80} "
            f"(query {info.get('query_id', '?')}); rebuild the rows with "
            "`kedro run --pipelines rl_search_qa`."
        )
    return ground_truth


def _check_trajectory(solution_str: str, info: Mapping[str, Any], source: str) -> Trajectory:
    rewards = _tool_rewards(info)
    trajectory = parse_trajectory(solution_str, rewards)
    # the tool reports, per call, whether it returned the source document (FinragSearchTool's step reward):
    # text that shows the source although no call found it was written by the model
    if (
        rewards
        and source in trajectory.retrieved
        and _tool_reported_source(info, source)
        and max(rewards) < 1.0
    ):
        why = f"the responses show source document {source}, but no search call returned it (tool_rewards)"
        return replace(trajectory, forged=why, retrieved=())
    return trajectory


def _penalty_counts(
    trajectory: Trajectory, cited: Sequence[str], config: SearchQARewardConfig
) -> dict[str, int]:
    queries = [normalise_chars(q) for q in trajectory.queries]
    retrieved = set(trajectory.retrieved)
    return {
        "over_search": max(0, len(queries) - config.max_searches),
        "repeated_search": len(queries) - len(set(queries)),
        "invalid_citation": sum(1 for c in cited if c not in retrieved),
        "forged_tool_response": int(bool(trajectory.forged)),
    }


def _citation(
    cited: Sequence[str], retrieved: set[str], source: str, substantive: bool, max_citations: int
) -> float:
    if not substantive or source not in cited or source not in retrieved:
        return 0.0
    precision = sum(1 for c in cited if c in retrieved) / len(cited)
    return precision * min(1.0, max_citations / len(cited))


async def _judge(
    question: str, reference: str, answer: str, config: SearchQARewardConfig
) -> tuple[float | None, str]:
    assert config.judge_llm is not None and config.judge_prompt is not None
    cut = config.max_judge_chars
    messages = config.judge_prompt.render(
        question=question or "（缺失）", reference=reference[:cut], answer=answer[:cut]
    )
    return await ask_judge(messages, config.judge_llm)


async def score_search_qa_async(
    solution_str: str, ground_truth: Any, extra_info: Mapping[str, Any] | None, config: SearchQARewardConfig
) -> SearchQAResult:
    """Score one trajectory (the judge call, if ``outcome: judge``, awaited here).

    Raises:
        ValueError: A row without ``extra_info.source_doc_id`` or without the source text as ground truth.
    """
    info = dict(extra_info or {})
    source = source_doc_id(info)
    if source is None:
        raise ValueError(
            f"search-QA row {info.get('query_id', '?')} has no extra_info.source_doc_id; "
            "rebuild the rows with `kedro run --pipelines rl_search_qa`."
        )
    reference = _reference(ground_truth, info)
    trajectory = _check_trajectory(solution_str, info, source)
    body = strip_citations(trajectory.answer)
    substantive = trajectory.answer is not None and len(normalise_chars(body)) >= config.min_answer_chars
    cited = citations(trajectory.answer)
    retrieved = set(trajectory.retrieved)
    calls_ok = trajectory.dropped_calls == 0 and all(not call.error for call in trajectory.searches)
    checks = (trajectory.answer is not None, trajectory.think_closed, calls_ok, substantive)
    outcome: float | None = 0.0
    status, error = "disabled", ""
    if config.outcome == "f1":
        outcome = char_f1(body, reference) if trajectory.answer is not None else 0.0
    elif not substantive:
        status = "skipped_no_answer"  # the model's failure, not the judge's
    else:
        outcome, error = await _judge(
            str(info.get("question") or ""), reference, trajectory.answer or "", config
        )
        status = "ok" if outcome is not None else "failed"
    components = {
        "outcome": outcome,
        "retrieval": 1.0 if source in retrieved else 0.0,
        "citation": _citation(cited, retrieved, source, substantive, config.max_citations),
        "format": sum(checks) / len(checks),
    }
    used = {k: v for k, v in components.items() if v is not None and config.weights[k] > 0}
    mean = sum(config.weights[k] * v for k, v in used.items()) / sum(config.weights[k] for k in used)
    counts = _penalty_counts(trajectory, cited, config)
    penalty = min(config.max_penalty, sum(config.penalties[k] * n for k, n in counts.items()))
    return SearchQAResult(
        score=mean - penalty,
        outcome=outcome,
        retrieval=components["retrieval"],
        citation=components["citation"],
        format=components["format"],
        penalty=penalty,
        searches=len(trajectory.queries),
        repeated_searches=counts["repeated_search"],
        over_searches=counts["over_search"],
        invalid_citations=counts["invalid_citation"],
        judge_status=status,
        judge_error=error,
        trajectory=trajectory,
    )


def score_search_qa(
    solution_str: str,
    ground_truth: Any,
    extra_info: Mapping[str, Any] | None,
    config: SearchQARewardConfig | Mapping[str, Any],
) -> SearchQAResult:
    """Synchronous :func:`score_search_qa_async` (tests, evaluation; not from inside an event loop)."""
    return asyncio.run(
        score_search_qa_async(
            solution_str, ground_truth, extra_info, SearchQARewardConfig.from_mapping(config)
        )
    )
