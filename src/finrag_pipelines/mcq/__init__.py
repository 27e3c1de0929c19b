"""Chinese finance multiple-choice questions: loaders, dedup/split, prompt format, answer extraction,
the GRPO reward and verl row builders. Kedro-free (pipelines mcq_prep, sft and rl call it)."""
