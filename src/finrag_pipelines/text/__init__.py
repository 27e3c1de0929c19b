"""Text handling: corpus normalisation, jieba tokenisation with a finance dictionary, deduplication.

Kedro-free library package.
"""
