"""Kedro-free launcher for ms-swift 4.x reranker training (``--task_type generative_reranker | reranker``).

Checked against the installed ms-swift 4.6.0:

* ``--task_type generative_reranker`` (a causal LM scored by ``logit(yes) − logit(no)`` at the last position,
  ``swift.utils.get_generative_reranker_logits``; Qwen3-Reranker: ``--model_type qwen3_reranker``, whose
  template renders Qwen3-Reranker's official prompt with the row's system message as ``<Instruct>``) and
  ``--task_type reranker`` (sequence classification with one label; e.g. ``bge_reranker``, or ``bert`` with
  ``--template bert`` for a BERT cross-encoder);
* ``--loss_type pointwise_reranker`` (BCE on each pair) or ``listwise_reranker`` (cross-entropy over a group
  of one positive and its negatives; ``LISTWISE_RERANKER_TEMPERATURE``, ``LISTWISE_RERANKER_MIN_GROUP_SIZE``);
  the older names ``reranker`` / ``generative_reranker`` in upstream examples are not in 4.6's ``loss_map``;
* rows ``{"messages": [system?, user query], "positive_messages": [[assistant doc]], "negative_messages":
  [[assistant doc], ...]}``; each row becomes ``MAX_POSITIVE_SAMPLES`` groups of one positive and up to
  ``MAX_NEGATIVE_SAMPLES`` sampled negatives;
* the answer tokens ``GENERATIVE_RERANKER_POSITIVE_TOKEN`` / ``..._NEGATIVE_TOKEN`` (set here to ``yes`` /
  ``no``, the tokens :class:`~finrag_pipelines.rerank.causal_lm.CausalLMReranker` reads).

Run bookkeeping, resume/skip and merging are :func:`~finrag_pipelines.training.swift.train_swift`'s.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import ClassVar, Literal, get_args

from pydantic import StrictInt, StrictStr, model_validator

from finrag_pipelines.kernels import KernelChoice
from finrag_pipelines.rerank.tiny_models import RERANK_TOKENS
from finrag_pipelines.training import swift as sw
from finrag_pipelines.training.trainer_config import NOT_BLANK, Number, setting

logger = logging.getLogger(__name__)

RerankerTask = Literal["generative_reranker", "reranker"]
RerankerLoss = Literal["pointwise_reranker", "listwise_reranker"]
RERANKER_TASKS = get_args(RerankerTask)
RERANKER_LOSSES = get_args(RerankerLoss)
TASK_OF_KIND = {"qwen3": "generative_reranker", "cross_encoder": "reranker"}
"""The ms-swift task that trains each reranker kind (``kind`` of :func:`~..rerank.factory.build_reranker`)."""


class SwiftRerankerConfig(sw.SwiftTrainConfig):
    """ms-swift reranker training settings; build it from conf with :meth:`from_params`.

    ``truncation_strategy`` must be ``delete`` for a generative reranker: its rows are cut to ``max_length``
    beforehand (``reranker_finetune``), and cutting the prompt's end would remove the position it answers at.
    """

    what: ClassVar[str] = "swift reranker training"

    task_type: RerankerTask = setting(f"must be one of {RERANKER_TASKS}")
    model_type: StrictStr = setting(
        "must name an ms-swift model type, e.g. qwen3_reranker, bge_reranker, bert", pattern=NOT_BLANK
    )
    template: StrictStr | None = setting(
        "must be an ms-swift template name (e.g. bert) or null for the model type's"
    )
    loss_type: RerankerLoss = setting(f"must be one of {RERANKER_LOSSES}")
    max_positive_samples: StrictInt = setting("must be an int >= 1", ge=1)
    max_negative_samples: StrictInt = setting("must be an int >= 1", ge=1)
    listwise_temperature: Number = setting("must be a number > 0", gt=0)
    listwise_min_group_size: StrictInt = setting("must be an int >= 2", ge=2)

    @model_validator(mode="after")
    def _check_generative_truncation(self) -> SwiftRerankerConfig:
        if self.task_type == "generative_reranker":
            self.need(
                self.truncation_strategy == "delete",
                "truncation_strategy",
                "must be delete for a generative reranker (rows are fitted to max_length beforehand; cutting "
                "would remove the prompt's end, where the model answers)",
            )
        return self

    @classmethod
    def managed_args(cls) -> frozenset[str]:
        """``swift sft`` arguments the launcher sets itself."""
        return sw.SwiftTrainConfig.managed_args() | {"template"}


def build_reranker_command(
    config: SwiftRerankerConfig,
    model_dir: str | Path,
    train_file: str | Path,
    dev_file: str | Path | None,
    output_dir: str | Path,
    *,
    resume_from: str | Path | None = None,
    gpus: int | None = None,
    swift_bin: str | None = None,
    kernels: KernelChoice | None = None,
) -> tuple[list[str], dict[str, str]]:
    """Build the ``swift sft`` command for reranker training.

    ``kernels`` (attention kernel, Liger) defaults to :func:`~finrag_pipelines.training.swift.swift_kernels`
    on this machine.

    Returns:
        ``(argv, env)``: env holds only the variables to add to the current environment.

    Raises:
        TrainingError: If a setting needs a GPU this machine lacks (bfloat16, several processes, deepspeed).
    """
    gpus = sw.gpu_count() if gpus is None else gpus
    sw.check_hardware(config, gpus)
    kernels = sw.swift_kernels(config, gpus, what="ms-swift reranker") if kernels is None else kernels
    task = [
        "--model_type",
        config.model_type,
        "--task_type",
        config.task_type,
        "--loss_type",
        config.loss_type,
    ]
    if config.template is not None:
        task += ["--template", config.template]
    argv = sw.swift_sft_argv(
        config,
        model_dir,
        task,
        train_file,
        dev_file,
        output_dir,
        kernels=kernels,
        resume_from=resume_from,
        swift_bin=swift_bin,
    )
    env = {
        "MAX_POSITIVE_SAMPLES": str(config.max_positive_samples),
        "MAX_NEGATIVE_SAMPLES": str(config.max_negative_samples),
        "LISTWISE_RERANKER_TEMPERATURE": str(config.listwise_temperature),
        "LISTWISE_RERANKER_MIN_GROUP_SIZE": str(config.listwise_min_group_size),
    }
    if config.task_type == "generative_reranker":
        env["GENERATIVE_RERANKER_POSITIVE_TOKEN"], env["GENERATIVE_RERANKER_NEGATIVE_TOKEN"] = RERANK_TOKENS
    return argv, {**env, **sw.device_env(config, gpus)}


def train_reranker(
    config: SwiftRerankerConfig,
    model_dir: str | Path,
    train_file: str | Path,
    dev_file: str | Path | None,
    work_dir: str | Path,
    merged_dir: str | Path,
    *,
    progress: bool = True,
) -> Path:
    """Train, resume or skip, then merge a reranker (:func:`~finrag_pipelines.training.swift.train_swift`).

    Returns:
        ``merged_dir``, a plain model folder that :func:`~..rerank.factory.build_reranker` loads.
    """
    return sw.train_swift(
        config, build_reranker_command, model_dir, train_file, dev_file, work_dir, merged_dir,
        what="reranker", progress=progress,
    )  # fmt: skip
