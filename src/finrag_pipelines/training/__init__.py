"""Launching ms-swift / verl trainers as subprocesses (filled by the training issues).

Kedro-free library package.
"""
