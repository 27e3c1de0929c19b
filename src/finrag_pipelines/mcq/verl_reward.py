"""File-path entry point for verl's custom reward loader.

verl loads ``reward.custom_reward_function.path`` with ``importlib.util.spec_from_file_location`` under a
made-up module name, which breaks modules defining dataclasses (``reward.py`` does). Point verl at this
file instead, or use ``path=pkg://finrag_pipelines.mcq.reward``; both need ``finrag_pipelines`` installed
in the training environment::

    reward.custom_reward_function.path=<repo>/src/finrag_pipelines/mcq/verl_reward.py
    reward.custom_reward_function.name=compute_score
    +reward.custom_reward_function.reward_kwargs.config_path=<abs path of rl_reward_config.json>
"""

from finrag_pipelines.mcq.reward import compute_score, compute_score_async

__all__ = ["compute_score", "compute_score_async"]
