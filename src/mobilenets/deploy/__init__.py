"""Deployment: fuse, export, quantize to int8, and run on the fastest CPU backend."""

from .export import ExportError, export
from .fuse import fuse
from .runtime import BACKENDS, Predictor, deploy

__all__ = ["BACKENDS", "ExportError", "Predictor", "deploy", "export", "fuse"]
