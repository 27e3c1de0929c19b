"""Search-augmented QA for GRPO: verl multi-turn rows from distilled queries, the trajectory parser and the
reward (outcome, retrieval, citation, format, penalties). Kedro-free (the rl_search_qa and rl pipelines and
the project's ``compute_score`` call it)."""
