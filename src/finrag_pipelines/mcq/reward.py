"""GRPO reward for Chinese finance multiple-choice answers, callable by verl as a custom reward.

verl (``reward.custom_reward_function.path=pkg://finrag_pipelines.mcq.reward`` or the file
``mcq/verl_reward.py`` — not this file by path: verl's file loader breaks dataclasses —,
``.name=compute_score``) calls
``compute_score(data_source=..., solution_str=..., ground_truth=..., extra_info=...)`` with keywords,
plus anything under ``reward.custom_reward_function.reward_kwargs``. The configuration comes from, in
order: a ``config`` keyword (a mapping or :class:`RewardConfig`; our tests), a ``config_path`` keyword
(``reward_kwargs.config_path=/abs/rl_reward_config.json``), or the JSON file named by
``$FINRAG_MCQ_REWARD_CONFIG``. The rl pipeline writes that file from ``parameters_rl.yml``. There are
no built-in defaults: without a config the call fails and says how to give one.

Components, each in [0, 1]:

* ``format``: mean of three checks: exactly one ``答案：\\boxed{…}`` after the think block, non-empty
  reasoning, no unterminated ``<think>``.
* ``correctness``: 1 for the exact letter set; for multi-select, ``partial_credit`` for a non-empty
  strict subset without a wrong letter (0 disables); else 0.
* ``process`` (optional): an LLM judge's 0–10 rating of the reasoning, /10. The judge sees the
  question, the options, the correct letters and the model's reasoning, never the reference
  explanation. A judge failure (after the client's retries and ``max_invalid_retries`` unparsable
  replies) is *not* a 0: ``process`` is ``None``, ``judge_status`` is ``"failed"`` and the score is
  renormalised over the other components.

``score = Σ w·c / Σ w`` over the available components, so every score is on the same [0, 1] scale
whether or not the judge ran.

Rows with ``data_source: finrag_search_qa`` (``rl.tasks.search_qa``: multi-turn answers with the ``search``
tool) are dispatched to :mod:`finrag_pipelines.search_qa.reward`, configured by the config's ``search_qa``
block; a run with such rows returns the union of both key sets for every row (NaN where a key does not apply).
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from finrag_pipelines.errors import ConfigurationError
from finrag_pipelines.llm.config import LLMConfig
from finrag_pipelines.llm.judge import ask_judge as judge_reasoning
from finrag_pipelines.llm.judge import parse_judge_score  # noqa: F401 - re-exported (tests, evaluation)
from finrag_pipelines.mcq.extract import Extraction, extract_answer, normalise_letters
from finrag_pipelines.mcq.format import parse_options
from finrag_pipelines.search_qa import reward as search_qa

CONFIG_ENV = "FINRAG_MCQ_REWARD_CONFIG"
"""Environment variable holding the path of the reward config JSON (written by the rl pipeline)."""

COMPONENTS: tuple[str, ...] = ("format", "correctness", "process")
MCQ_VERL_KEYS: tuple[str, ...] = (
    "score",
    "acc",
    "format",
    "correctness",
    "process",
    "judge_failed",
    "answer_statements",
)
"""The keys of :meth:`RewardResult.as_verl_dict`."""

JUDGE_SYSTEM = "你是严谨的金融考试阅卷专家，只根据推理过程本身的质量打分。"
JUDGE_TEMPLATE = (
    "请评估下面这段解题推理的质量。已知本题的正确答案，请判断推理是否正确、完整、符合金融常识，"
    "并且能够支撑正确答案。不要仅因为最终选项正确就给高分；推理中的事实错误、计算错误、跳步、"
    "或推理与结论矛盾都应扣分。\n\n"
    "【题目】\n{question}\n\n【选项】\n{options}\n\n【正确答案】{truth}\n\n"
    "【考生的推理】\n{reasoning}\n\n【考生的最终答案】{answer}\n\n"
    "请只输出一个 0 到 10 之间的整数分数，不要输出其他内容。"
)


class RewardConfigError(ConfigurationError):
    """The reward configuration is missing or invalid."""


@dataclass(frozen=True)
class JudgeConfig:
    """The optional process judge.

    Attributes:
        enabled: Call the judge at all.
        llm: The endpoint (``finrag_pipelines.llm.config.LLMConfig``; ``backend`` must be ``openai``).
        max_reasoning_chars: Reasoning longer than this is cut (head kept) before it is shown.
    """

    enabled: bool
    llm: LLMConfig | None = None
    max_reasoning_chars: int = 4000

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> JudgeConfig:
        _check_keys(data, {f.name for f in fields(cls)}, {"enabled"}, "reward.judge")
        enabled = data["enabled"]
        if not isinstance(enabled, bool):
            raise RewardConfigError(f"reward.judge.enabled must be true or false, got {enabled!r}")
        llm = data.get("llm")
        llm_config = None
        if llm is not None:
            llm_config = llm if isinstance(llm, LLMConfig) else LLMConfig.from_mapping(llm)
        if enabled and (llm_config is None or llm_config.backend != "openai"):
            raise RewardConfigError(
                "reward.judge.enabled is true but reward.judge.llm is not an 'openai' backend "
                "with a base_url; "
                "point it at an OpenAI-compatible server or set enabled: false."
            )
        chars = data.get("max_reasoning_chars", 4000)
        if not isinstance(chars, int) or chars < 100:
            raise RewardConfigError(
                f"reward.judge.max_reasoning_chars must be an integer >= 100, got {chars!r}"
            )
        return cls(enabled=enabled, llm=llm_config, max_reasoning_chars=chars)


@dataclass(frozen=True)
class RewardConfig:
    """Weights, partial credit, fallback reading and the judge.

    Attributes:
        weights: ``{"format", "correctness", "process"}`` -> non-negative weight.
        partial_credit: Correctness of a multi-select strict subset without wrong letters (0 = none).
        allow_fallback: Count an unboxed ``答案：A`` for correctness (it never counts for format).
        judge: The process judge.
        search_qa: The reward of ``data_source: finrag_search_qa`` rows
            (:mod:`finrag_pipelines.search_qa.reward`), or ``None`` when the run has no such rows.
    """

    weights: dict[str, float]
    partial_credit: float
    allow_fallback: bool
    judge: JudgeConfig = field(default_factory=lambda: JudgeConfig(enabled=False))
    search_qa: search_qa.SearchQARewardConfig | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> RewardConfig:
        """Build and check a config from a mapping (``parameters_rl.yml`` ``reward`` block, or its JSON).

        Raises:
            RewardConfigError: Naming the bad key or value.
        """
        if isinstance(data, RewardConfig):
            return data
        if not isinstance(data, Mapping):
            raise RewardConfigError(f"the reward config must be a mapping, got {type(data).__name__}")
        _check_keys(
            data, {f.name for f in fields(cls)}, {"weights", "partial_credit", "allow_fallback"}, "reward"
        )
        weights = data["weights"]
        if not isinstance(weights, Mapping) or set(weights) != set(COMPONENTS):
            raise RewardConfigError(f"reward.weights must give exactly {list(COMPONENTS)}, got {weights!r}")
        clean: dict[str, float] = {}
        for name, value in weights.items():
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or value < 0
                or not math.isfinite(value)
            ):
                raise RewardConfigError(f"reward.weights.{name} must be a number >= 0, got {value!r}")
            clean[name] = float(value)
        if clean["format"] + clean["correctness"] <= 0:
            raise RewardConfigError("reward.weights: format + correctness must be > 0 (the judge may fail)")
        partial = data["partial_credit"]
        if isinstance(partial, bool) or not isinstance(partial, (int, float)) or not 0 <= partial < 1:
            raise RewardConfigError(f"reward.partial_credit must be a number in [0, 1), got {partial!r}")
        if not isinstance(data["allow_fallback"], bool):
            raise RewardConfigError(
                f"reward.allow_fallback must be true or false, got {data['allow_fallback']!r}"
            )
        judge = data.get("judge") or {"enabled": False}
        judge_cfg = judge if isinstance(judge, JudgeConfig) else JudgeConfig.from_mapping(judge)
        block = data.get("search_qa")
        try:
            search_cfg = None if block is None else search_qa.SearchQARewardConfig.from_mapping(block)
        except ValueError as exc:
            raise RewardConfigError(str(exc)) from exc
        return cls(
            weights=clean,
            partial_credit=float(partial),
            allow_fallback=data["allow_fallback"],
            judge=judge_cfg,
            search_qa=search_cfg,
        )


def _check_keys(data: Mapping[str, Any], known: set[str], required: set[str], where: str) -> None:
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise RewardConfigError(f"unknown key(s) {unknown} in {where}; allowed: {sorted(known)}")
    missing = sorted(required - set(data))
    if missing:
        raise RewardConfigError(f"missing key(s) {missing} in {where}")


@functools.lru_cache(maxsize=8)
def _load_config_file(path: str) -> RewardConfig:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RewardConfigError(f"cannot read the reward config {path}: {exc}") from exc
    return RewardConfig.from_mapping(data)


def resolve_config(
    config: RewardConfig | Mapping[str, Any] | None = None, config_path: str | None = None
) -> RewardConfig:
    """The config to use: ``config``, else the file ``config_path``, else ``$FINRAG_MCQ_REWARD_CONFIG``.

    Raises:
        RewardConfigError: If none is given or it is invalid.
    """
    if config is not None:
        return RewardConfig.from_mapping(config)
    path = config_path or os.environ.get(CONFIG_ENV, "").strip()
    if not path:
        raise RewardConfigError(
            "no reward config: pass config=..., "
            "set reward.custom_reward_function.reward_kwargs.config_path, "
            f"or export {CONFIG_ENV}=<path of rl_reward_config.json written by `kedro run --pipelines rl`>."
        )
    return _load_config_file(str(path))


@dataclass(frozen=True)
class RewardResult:
    """One scored response.

    Attributes:
        score: Weighted mean of the available components, in [0, 1].
        format, correctness: Components in [0, 1].
        process: Judge component in [0, 1], or ``None`` (judge disabled or failed).
        judge_status: ``"disabled"``, ``"ok"``, ``"failed"`` or ``"skipped_no_reasoning"``.
        judge_error: Why the judge failed, else ``""``.
        extraction: The extractor's result.
    """

    score: float
    format: float
    correctness: float
    process: float | None
    judge_status: str
    judge_error: str
    extraction: Extraction

    def as_dict(self) -> dict[str, Any]:
        """Full result (strings and ``None`` included), for our own evaluation and tests."""
        return {
            "score": self.score,
            "format": self.format,
            "correctness": self.correctness,
            "process": self.process,
            "judge_status": self.judge_status,
            "judge_error": self.judge_error,
            "pred": self.extraction.letters or "",
            "extract_reason": self.extraction.reason,
            "n_answer_statements": self.extraction.n_answer_statements,
        }

    def as_verl_dict(self) -> dict[str, float]:
        """Numbers only, same keys every call: verl averages each key with ``np.mean`` (a string or
        ``None`` would break it). ``process`` is NaN when absent; ``judge_failed`` marks failures."""
        return {
            "score": self.score,
            "acc": 1.0 if self.correctness == 1.0 else 0.0,
            "format": self.format,
            "correctness": self.correctness,
            "process": math.nan if self.process is None else self.process,
            "judge_failed": 1.0 if self.judge_status == "failed" else 0.0,
            "answer_statements": float(self.extraction.n_answer_statements),
        }


def _item_fields(
    ground_truth: Any, extra_info: Mapping[str, Any] | None
) -> tuple[str, dict[str, str] | None, str, str]:
    info = dict(extra_info or {})
    if isinstance(ground_truth, Mapping):  # reward_model dict passed whole
        ground_truth = ground_truth.get("ground_truth")
    truth = normalise_letters(str(ground_truth or ""))
    if not truth:
        raise ValueError(
            f"ground_truth must be option letters such as 'AC', got {ground_truth!r} "
            f"(item {info.get('item_id', '?')}); rebuild the RL parquet with the rl pipeline."
        )
    options = parse_options(info["options"]) if info.get("options") else None
    kind = str(info.get("kind") or ("multi" if len(truth) > 1 else "single"))
    return truth, options, kind, str(info.get("question") or "")


def _correctness(letters: str | None, truth: str, kind: str, partial: float) -> float:
    if letters is None:
        return 0.0
    if letters == truth:
        return 1.0
    if partial > 0 and kind == "multi" and set(letters) < set(truth):
        return partial
    return 0.0


def _combine(components: dict[str, float | None], weights: Mapping[str, float]) -> float:
    used = {k: v for k, v in components.items() if v is not None and weights[k] > 0}
    total = sum(weights[k] for k in used)
    return sum(weights[k] * v for k, v in used.items()) / total


def judge_messages(
    question: str,
    options: Mapping[str, str] | None,
    truth: str,
    reasoning: str,
    answer: str | None,
    max_chars: int,
) -> list[dict[str, str]]:
    """The judge's chat messages (no reference explanation in them)."""
    shown = reasoning if len(reasoning) <= max_chars else reasoning[:max_chars] + "……（推理过长，已截断）"
    opts = "\n".join(f"{k}. {v}" for k, v in (options or {}).items()) or "（无）"
    user = JUDGE_TEMPLATE.format(
        question=question or "（缺失）", options=opts, truth=truth, reasoning=shown, answer=answer or "未给出"
    )
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


async def score_response_async(
    solution_str: str, ground_truth: Any, extra_info: Mapping[str, Any] | None, config: RewardConfig
) -> RewardResult:
    """Score one response (the judge call, if enabled, awaited here)."""
    truth, options, kind, question = _item_fields(ground_truth, extra_info)
    extraction = extract_answer(
        solution_str, options.keys() if options else None, allow_fallback=config.allow_fallback
    )
    letters = extraction.letters if (extraction.via == "boxed" or config.allow_fallback) else None
    checks = (extraction.format_ok, extraction.reasoning_ok, extraction.think != "unterminated")
    fmt = sum(checks) / len(checks)
    correct = _correctness(letters, truth, kind, config.partial_credit)
    process: float | None = None
    status, error = "disabled", ""
    if config.judge.enabled and config.weights["process"] > 0:
        if not extraction.reasoning_ok:
            process, status = 0.0, "skipped_no_reasoning"  # the model's failure, not the judge's
        else:
            assert config.judge.llm is not None
            messages = judge_messages(
                question, options, truth, extraction.reasoning, letters, config.judge.max_reasoning_chars
            )
            process, error = await judge_reasoning(messages, config.judge.llm)
            status = "ok" if process is not None else "failed"
    score = _combine({"format": fmt, "correctness": correct, "process": process}, config.weights)
    return RewardResult(score, fmt, correct, process, status, error, extraction)


def _run(coro: Any) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}  # called from inside an event loop: run ours in a helper thread

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def score_response(
    solution_str: str,
    ground_truth: Any,
    extra_info: Mapping[str, Any] | None,
    config: RewardConfig | Mapping[str, Any],
) -> RewardResult:
    """Synchronous :func:`score_response_async` (for evaluation and tests)."""
    return _run(
        score_response_async(solution_str, ground_truth, extra_info, RewardConfig.from_mapping(config))
    )


def _verl_keys(values: dict[str, float], config: RewardConfig) -> dict[str, float]:
    """The same keys for every row of a run: verl stacks each key over the batch (a row lacking one
    fails), so a run with search-QA rows gives every row both key sets, NaN where a key does not apply."""
    if config.search_qa is None:
        return values
    keys = dict.fromkeys([*MCQ_VERL_KEYS, *search_qa.VERL_KEYS])
    return {key: values.get(key, math.nan) for key in keys}


async def _score_async(
    data_source: str | None,
    solution_str: str,
    ground_truth: Any,
    extra_info: Mapping[str, Any] | None,
    cfg: RewardConfig,
) -> dict[str, float]:
    if data_source == search_qa.DATA_SOURCE:
        if cfg.search_qa is None:
            raise RewardConfigError(
                f"a {search_qa.DATA_SOURCE} row, but the reward config has no search_qa block; rebuild it "
                "with rl.tasks.search_qa on (`kedro run --pipelines rl`)"
            )
        result = await search_qa.score_search_qa_async(solution_str, ground_truth, extra_info, cfg.search_qa)
    else:
        result = await score_response_async(solution_str, ground_truth, extra_info, cfg)
    return _verl_keys(result.as_verl_dict(), cfg)


def compute_score(
    data_source: str | None = None,
    solution_str: str = "",
    ground_truth: Any = None,
    extra_info: Mapping[str, Any] | None = None,
    *,
    config: RewardConfig | Mapping[str, Any] | None = None,
    config_path: str | None = None,
    reward_router_address: Any = None,
    reward_model_tokenizer: Any = None,
    **unexpected: Any,
) -> dict[str, float]:
    """verl's custom reward entry point: numbers only (see :meth:`RewardResult.as_verl_dict`).

    Rows with ``data_source: finrag_search_qa`` are scored by :mod:`finrag_pipelines.search_qa.reward`
    (the config's ``search_qa`` block); every other row as a multiple-choice answer.

    Raises:
        RewardConfigError: No or invalid config, or an unknown keyword (a typo in ``reward_kwargs``).
        ValueError: A row whose ground truth is not option letters.
    """
    if unexpected:
        raise RewardConfigError(
            f"compute_score got unknown keyword(s) {sorted(unexpected)}; allowed: config, config_path"
        )
    # reward_router_address / reward_model_tokenizer: what verl's reward managers add when a reward model is
    # served; this rule-based reward does not use them
    cfg = resolve_config(config, config_path)
    return _run(_score_async(data_source, solution_str, ground_truth, extra_info, cfg))


async def compute_score_async(
    data_source: str | None = None,
    solution_str: str = "",
    ground_truth: Any = None,
    extra_info: Mapping[str, Any] | None = None,
    *,
    config: RewardConfig | Mapping[str, Any] | None = None,
    config_path: str | None = None,
    reward_router_address: Any = None,
    reward_model_tokenizer: Any = None,
) -> dict[str, float]:
    """The same as :func:`compute_score`, as a coroutine (verl awaits coroutine reward functions)."""
    cfg = resolve_config(config, config_path)
    return await _score_async(data_source, solution_str, ground_truth, extra_info, cfg)
