"""Prediction over many images (a folder, a glob, a list of millions of paths) into Parquet, on this
machine or on a Ray cluster: :func:`predict_to_parquet`, and :class:`BatchPredictor`, the per-batch
callable for a user's own Ray Data pipeline."""

from mobilenets.batch.job import predict_to_parquet
from mobilenets.batch.rows import BatchPredictor, JobOptions

__all__ = ["BatchPredictor", "JobOptions", "predict_to_parquet"]
