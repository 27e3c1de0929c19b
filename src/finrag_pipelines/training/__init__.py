"""Launching ms-swift / verl trainers as subprocesses, with run manifests. Kedro-free library package.

* :mod:`.runs`: run bookkeeping every trainer uses (``TrainingError``, the logged subprocess runner,
  hashes, base-model fingerprint, package versions, ``manifest.json``, the up-to-date check).
* :mod:`.trainer_config`: the typed (pydantic) base of the trainer configs.
* :mod:`.checkpoints`: last checkpoint of a swift or verl run, merged into a plain model folder.
* :mod:`.machine`: visible GPUs and the trainers' console scripts.
* :mod:`.staging`: trainer input files written atomically, untouched when unchanged.
* :mod:`.swift`: ms-swift embedding (InfoNCE) training.
* :mod:`.verl_common`, :mod:`.verl_sft`, :mod:`.verl_grpo`: verl SFT and GRPO.
"""
