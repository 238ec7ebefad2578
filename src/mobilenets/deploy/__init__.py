"""Deployment: fuse, export, quantize to int8, and run on the fastest CPU backend."""

from mobilenets.deploy.export import export
from mobilenets.deploy.predictor import Predictor, deploy
from mobilenets.models.fuse import fuse
from mobilenets.runtime.precision import BACKENDS
from mobilenets.util.errors import ExportError

__all__ = ["BACKENDS", "ExportError", "Predictor", "deploy", "export", "fuse"]
