"""Kedro-free launcher for verl 0.9 GRPO: ``python -m verl.trainer.main_ppo algorithm.adv_estimator=grpo
key=value ...``.

* :class:`VerlGRPOConfig`: every knob, read from conf (no defaults hidden here).
* :func:`check_grpo_preflight`: fail fast, before ray starts, on a machine that cannot run the job
  (``main_ppo`` waits forever for GPUs).
* :func:`build_grpo_command`, :func:`train_grpo` (train or skip, then merge the actor into a plain model),
  :func:`project_reward_file` (the project's reward for verl's file loader).

Checked against verl 0.9.1's ``ppo_trainer.yaml``: the reward function is
``reward.custom_reward_function.path/name`` (the top-level ``custom_reward_function`` is the legacy
spelling verl migrates); multi-turn tools are ``actor_rollout_ref.rollout.multi_turn.{enable,
tool_config_path,format}``; tools only run under the ``tool_agent`` agent loop
(``actor_rollout_ref.rollout.agent.default_agent_loop``); ``data.apply_chat_template_kwargs`` is an empty
dict, so ``enable_thinking`` is added with ``+``.
"""

from __future__ import annotations

import ast
import importlib.util
import logging
import sys
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

from pydantic import StrictBool, StrictInt, StrictStr, model_validator

from finrag_pipelines.kernels import KernelChoice, choose_kernels
from finrag_pipelines.training.machine import gpu_count
from finrag_pipelines.training.runs import TrainingError
from finrag_pipelines.training.trainer_config import NOT_BLANK, Number, PathText, setting
from finrag_pipelines.training.verl_common import (
    BOOL_RULE,
    PATH_RULE,
    POSITIVE_RULE,
    TRUNCATIONS,
    Truncation,
    VerlConfig,
    check_base_model,
    hydra_value,
    kernel_overrides,
    train_and_merge,
    training_run,
)

logger = logging.getLogger(__name__)

GRPO_ENTRY = "verl.trainer.main_ppo"
RolloutEngine = Literal["vllm", "sglang"]
KlLossType = Literal["kl", "abs", "mse", "low_var_kl", "full"]
MultiTurnFormat = Literal["hermes", "gpt-oss"]
ROLLOUT_ENGINES = get_args(RolloutEngine)
KL_LOSS_TYPES = get_args(KlLossType)
MULTI_TURN_FORMATS = get_args(MultiTurnFormat)

_GRPO_MANAGED = frozenset(
    {
        "algorithm.adv_estimator", "algorithm.use_kl_in_reward",
        "data.train_files", "data.val_files", "data.max_prompt_length", "data.max_response_length",
        "data.train_batch_size", "data.val_batch_size", "data.filter_overlong_prompts", "data.truncation",
        "data.seed", "data.apply_chat_template_kwargs.enable_thinking",
        "actor_rollout_ref.model.path", "actor_rollout_ref.model.lora_rank",
        "actor_rollout_ref.model.lora_alpha", "actor_rollout_ref.model.target_modules",
        "actor_rollout_ref.model.use_liger", "actor_rollout_ref.model.use_remove_padding",
        "actor_rollout_ref.model.override_config.attn_implementation",
        "actor_rollout_ref.actor.optim.lr", "actor_rollout_ref.actor.optim.lr_warmup_steps_ratio",
        "actor_rollout_ref.actor.ppo_mini_batch_size", "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu",
        "actor_rollout_ref.actor.use_kl_loss", "actor_rollout_ref.actor.kl_loss_coef",
        "actor_rollout_ref.actor.kl_loss_type", "actor_rollout_ref.actor.entropy_coeff",
        "actor_rollout_ref.rollout.name", "actor_rollout_ref.rollout.n",
        "actor_rollout_ref.rollout.tensor_model_parallel_size",
        "actor_rollout_ref.rollout.gpu_memory_utilization",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu",
        "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu",
        "actor_rollout_ref.rollout.multi_turn.enable",
        "actor_rollout_ref.rollout.multi_turn.tool_config_path",
        "actor_rollout_ref.rollout.multi_turn.format",
        "actor_rollout_ref.rollout.multi_turn.max_assistant_turns",
        "actor_rollout_ref.rollout.agent.default_agent_loop",
        "reward.custom_reward_function.path", "reward.custom_reward_function.name",
        "custom_reward_function.path", "custom_reward_function.name",
        "trainer.total_epochs", "trainer.save_freq", "trainer.test_freq", "trainer.val_before_train",
        "trainer.n_gpus_per_node", "trainer.nnodes", "trainer.project_name", "trainer.experiment_name",
        "trainer.logger", "trainer.default_local_dir", "trainer.critic_warmup", "trainer.resume_mode",
        "hydra.run.dir",
    }
)  # fmt: skip


class VerlGRPOConfig(VerlConfig):
    """verl GRPO settings (``main_ppo``, ``algorithm.adv_estimator=grpo``); build with :meth:`from_params`.

    Every field except the optional ones at the end is required. ``enable_thinking`` null leaves the
    chat template alone; false adds ``+data.apply_chat_template_kwargs.enable_thinking=False`` (Qwen3).
    ``tool_config_path`` set turns on multi-turn tool rollouts (``multi_turn.enable``, the tool
    config, ``multi_turn_format``) with the ``tool_agent`` agent loop as the default.
    """

    what: ClassVar[str] = "verl GRPO"
    managed: ClassVar[frozenset[str]] = _GRPO_MANAGED

    val_files: PathText = setting(PATH_RULE, pattern=NOT_BLANK)
    reward_function_path: PathText = setting(PATH_RULE, pattern=NOT_BLANK)
    reward_function_name: StrictStr = setting(
        "must be the name of a function in reward_function_path, e.g. compute_score"
    )
    use_liger: StrictBool = setting(BOOL_RULE)
    rollout_engine: RolloutEngine = setting(f"must be one of {ROLLOUT_ENGINES}")
    rollout_n: StrictInt = setting("must be >= 2: GRPO compares responses within a group", ge=2)
    tensor_model_parallel_size: StrictInt = setting(POSITIVE_RULE, ge=1)
    gpu_memory_utilization: Number = setting("must be in (0, 1)", gt=0, lt=1)
    max_prompt_length: StrictInt = setting(POSITIVE_RULE, ge=1)
    max_response_length: StrictInt = setting(POSITIVE_RULE, ge=1)
    filter_overlong_prompts: StrictBool = setting(BOOL_RULE)
    truncation: Truncation = setting(f"must be one of {TRUNCATIONS}")
    train_batch_size: StrictInt = setting(POSITIVE_RULE, ge=1)
    val_batch_size: StrictInt = setting(POSITIVE_RULE, ge=1)
    ppo_mini_batch_size: StrictInt = setting(POSITIVE_RULE, ge=1)
    ppo_micro_batch_size_per_gpu: StrictInt = setting(POSITIVE_RULE, ge=1)
    log_prob_micro_batch_size_per_gpu: StrictInt = setting(POSITIVE_RULE, ge=1)
    use_kl_loss: StrictBool = setting(BOOL_RULE)
    kl_loss_coef: Number = setting("must be a number >= 0", ge=0)
    kl_loss_type: KlLossType = setting(f"must be one of {KL_LOSS_TYPES}")
    entropy_coeff: Number = setting("must be a number >= 0", ge=0)
    val_before_train: StrictBool = setting(BOOL_RULE)
    n_gpus_per_node: StrictInt = setting(POSITIVE_RULE, ge=1)
    enable_thinking: StrictBool | None = setting(
        "must be true, false or null (leave the chat template's default)", default=None
    )
    tool_config_path: PathText | None = setting("must be a path or null", default=None, pattern=NOT_BLANK)
    multi_turn_format: MultiTurnFormat = setting(
        f"must be one of {MULTI_TURN_FORMATS} (Qwen models use hermes)", default="hermes"
    )
    max_assistant_turns: StrictInt | None = setting("must be an int >= 1 or null", default=None, ge=1)

    @model_validator(mode="after")
    def _check_grpo_rules(self) -> VerlGRPOConfig:
        self.need(
            self.reward_function_path.endswith(".py"),
            "reward_function_path",
            "must be a .py file defining the reward function",
        )
        self.need(
            self.reward_function_name.isidentifier(),
            "reward_function_name",
            "must be the name of a function in reward_function_path, e.g. compute_score",
        )
        self.need(
            self.ppo_mini_batch_size <= self.train_batch_size,
            "ppo_mini_batch_size",
            f"must be <= train_batch_size ({self.train_batch_size})",
        )
        self.need(
            self.n_gpus_per_node % self.tensor_model_parallel_size == 0,
            "tensor_model_parallel_size",
            f"must divide n_gpus_per_node ({self.n_gpus_per_node}); use 1 on one GPU",
        )
        return self


def _module_available(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def _defines_function(path: Path, name: str) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return True
        if isinstance(node, ast.ImportFrom) and any((a.asname or a.name) == name for a in node.names):
            return True  # a thin entry file re-exporting the function (e.g. mcq/verl_reward.py)
    return False


def check_grpo_preflight(config: VerlGRPOConfig, gpus: int | None = None) -> None:
    """Fail fast, before ray starts, when the GRPO job cannot run here.

    ``verl.trainer.main_ppo`` waits forever for GPU resources on a machine without them, and fails
    deep inside a ray worker when the rollout engine is missing; this says why up front.

    Raises:
        TrainingError: No GPU, too few GPUs, verl or the rollout engine not importable, the reward
            file or function or the tool config missing.
    """
    gpus = gpu_count() if gpus is None else gpus
    problems = []
    if gpus == 0:
        problems.append(
            "no CUDA GPU is visible (verl GRPO needs GPUs for the actor and the rollout engine; "
            "main_ppo would wait forever for them)"
        )
    elif config.n_gpus_per_node > gpus:
        problems.append(f"n_gpus_per_node: {config.n_gpus_per_node} but only {gpus} GPU(s) are visible")
    if not _module_available("verl"):
        problems.append("verl is not installed (pip install -e '.[train]')")
    if not _module_available(config.rollout_engine):
        problems.append(
            f"rollout_engine: {config.rollout_engine} but the `{config.rollout_engine}` package is not "
            "importable here; install a build matching torch on the GPU machine, or pick the other engine"
        )
    reward = Path(config.reward_function_path)
    if not reward.is_file():
        problems.append(f"reward_function_path: {reward} does not exist")
    elif not _defines_function(reward, config.reward_function_name):
        problems.append(f"reward_function_name: {config.reward_function_name} is not a function in {reward}")
    if config.tool_config_path is not None and not Path(config.tool_config_path).is_file():
        problems.append(f"tool_config_path: {config.tool_config_path} does not exist")
    if problems:
        raise TrainingError(
            "verl GRPO cannot start on this machine: " + "; ".join(problems) + ". Fix conf or run it on a "
            "GPU machine with the rollout engine installed."
        )


def grpo_kernels(config: VerlGRPOConfig, gpus: int | None = None) -> KernelChoice:
    """flash-attn 2 / sdpa and Liger on / off for the GRPO actor and reference
    (:func:`~finrag_pipelines.kernels.choose_kernels`)."""
    gpus = gpu_count() if gpus is None else gpus
    return choose_kernels("verl GRPO", gpu=gpus > 0, liger=config.use_liger)


def build_grpo_command(
    config: VerlGRPOConfig,
    *,
    checkpoint_dir: str | Path | None = None,
    python: str | None = None,
    kernels: KernelChoice | None = None,
) -> tuple[list[str], dict[str, str]]:
    """Build ``python -m verl.trainer.main_ppo algorithm.adv_estimator=grpo key=value ...``.

    Launches nothing: run :func:`check_grpo_preflight` before launching it.

    Args:
        config: GRPO settings.
        checkpoint_dir: ``trainer.default_local_dir`` (default ``<output_dir>/checkpoints``).
        python: The interpreter (default: this one).
        kernels: The actor's attention kernel and Liger setting (default: :func:`grpo_kernels` on this
            machine), through :func:`~finrag_pipelines.training.verl_common.kernel_overrides`.

    Returns:
        ``(argv, env)``: env holds only the variables to add to the current environment.
    """
    ckpt_dir = Path(config.output_dir) / "checkpoints" if checkpoint_dir is None else Path(checkpoint_dir)
    model = "actor_rollout_ref.model"
    actor = "actor_rollout_ref.actor"
    rollout = "actor_rollout_ref.rollout"
    ref = "actor_rollout_ref.ref"
    overrides: dict[str, Any] = {
        "algorithm.adv_estimator": "grpo",
        "algorithm.use_kl_in_reward": False,
        "data.train_files": config.train_files,
        "data.val_files": config.val_files,
        "data.train_batch_size": config.train_batch_size,
        "data.val_batch_size": config.val_batch_size,
        "data.max_prompt_length": config.max_prompt_length,
        "data.max_response_length": config.max_response_length,
        "data.filter_overlong_prompts": config.filter_overlong_prompts,
        "data.truncation": config.truncation,
        "data.seed": config.seed,
        f"{model}.path": config.model_path,
        f"{model}.lora_rank": config.lora_rank,
    }
    if config.lora_rank > 0:
        overrides[f"{model}.lora_alpha"] = config.lora_alpha
        overrides[f"{model}.target_modules"] = config.target_modules
    overrides.update(kernel_overrides(model, grpo_kernels(config) if kernels is None else kernels))
    overrides.update(
        {
            f"{actor}.optim.lr": config.learning_rate,
            f"{actor}.optim.lr_warmup_steps_ratio": config.lr_warmup_steps_ratio,
            f"{actor}.ppo_mini_batch_size": config.ppo_mini_batch_size,
            f"{actor}.ppo_micro_batch_size_per_gpu": config.ppo_micro_batch_size_per_gpu,
            f"{actor}.use_kl_loss": config.use_kl_loss,
            f"{actor}.kl_loss_coef": config.kl_loss_coef,
            f"{actor}.kl_loss_type": config.kl_loss_type,
            f"{actor}.entropy_coeff": config.entropy_coeff,
            f"{rollout}.name": config.rollout_engine,
            f"{rollout}.n": config.rollout_n,
            f"{rollout}.tensor_model_parallel_size": config.tensor_model_parallel_size,
            f"{rollout}.gpu_memory_utilization": config.gpu_memory_utilization,
            f"{rollout}.log_prob_micro_batch_size_per_gpu": config.log_prob_micro_batch_size_per_gpu,
            f"{ref}.log_prob_micro_batch_size_per_gpu": config.log_prob_micro_batch_size_per_gpu,
        }
    )
    if config.tool_config_path is not None:
        overrides[f"{rollout}.multi_turn.enable"] = True
        overrides[f"{rollout}.multi_turn.tool_config_path"] = config.tool_config_path
        overrides[f"{rollout}.multi_turn.format"] = config.multi_turn_format
        if config.max_assistant_turns is not None:
            overrides[f"{rollout}.multi_turn.max_assistant_turns"] = config.max_assistant_turns
        overrides[f"{rollout}.agent.default_agent_loop"] = "tool_agent"
    overrides.update(
        {
            "reward.custom_reward_function.path": config.reward_function_path,
            "reward.custom_reward_function.name": config.reward_function_name,
            "trainer.critic_warmup": 0,
            "trainer.total_epochs": config.total_epochs,
            "trainer.save_freq": config.save_freq,
            "trainer.test_freq": config.test_freq,
            "trainer.val_before_train": config.val_before_train,
            "trainer.nnodes": 1,
            "trainer.n_gpus_per_node": config.n_gpus_per_node,
            "trainer.project_name": config.project_name,
            "trainer.experiment_name": config.experiment_name,
            "trainer.logger": list(config.logger),
            "trainer.default_local_dir": str(ckpt_dir),
            "trainer.resume_mode": "auto",
            "hydra.run.dir": str(Path(config.output_dir) / "hydra"),
        }
    )
    argv = [python or sys.executable, "-m", GRPO_ENTRY]
    argv += [f"{key}={hydra_value(value)}" for key, value in overrides.items()]
    if config.enable_thinking is not None:
        argv.append(f"+data.apply_chat_template_kwargs.enable_thinking={hydra_value(config.enable_thinking)}")
    argv += list(config.extra_overrides)
    return argv, {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def train_grpo(
    config: VerlGRPOConfig,
    merged_dir: str | Path,
    *,
    gpus: int | None = None,
    progress: bool = True,
) -> Path:
    """Preflight, train (verl resumes an unfinished run of the same data and config) or skip, then merge.

    :func:`check_grpo_preflight` runs first, so a machine without GPUs or without the rollout engine
    fails in milliseconds instead of ray waiting forever. Layout as in
    :func:`~finrag_pipelines.training.verl_sft.train_sft`; the actor checkpoint ``global_step_<N>/actor``
    is merged into ``merged_dir``.

    Returns:
        ``merged_dir``, a plain HF causal-LM folder.
    """
    check_grpo_preflight(config, gpus)
    check_base_model(config.model_path)
    merged_dir = Path(merged_dir)
    run = training_run(config)
    if run.is_up_to_date(merged_dir):
        logger.info("GRPO model in %s is up to date (%s); not retraining", merged_dir, run.manifest_path)
        return merged_dir
    checkpoint_dir = run.work_dir / "checkpoints" / run.key
    kernels = grpo_kernels(config, gpus)
    argv, env = build_grpo_command(config, checkpoint_dir=checkpoint_dir, kernels=kernels)
    return train_and_merge(
        run, argv, env, checkpoint_dir, merged_dir, role="actor", progress=progress, kernels=kernels
    )


def project_reward_file() -> Path:
    """The file verl loads as the reward (``finrag_pipelines/mcq/verl_reward.py``), found without
    importing it."""
    spec = importlib.util.find_spec("finrag_pipelines.mcq.verl_reward")
    if spec is None or spec.origin is None:
        raise TrainingError(
            "finrag_pipelines.mcq.verl_reward is not importable; install the project (pip install -e .)"
        )
    return Path(spec.origin)
