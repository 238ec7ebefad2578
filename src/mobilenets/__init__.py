"""MobileNetV1 to V5, exact to the papers, with real weights and the whole deployment workflow."""

from __future__ import annotations

from mobilenets.deploy import deploy, export
from mobilenets.models.fuse import fuse
from mobilenets.models.layers import make_divisible
from mobilenets.models.profile import Profile, profile
from mobilenets.models.tasks import list_models
from mobilenets.util.errors import MobilenetsError
from mobilenets.weights.catalog import get_weights, list_pretrained
from mobilenets.weights.convert import convert_state_dict
from mobilenets.weights.factory import create_model, load_checkpoint, load_tflite

__version__ = "0.1.0"


__all__ = [
    "MobilenetsError",
    "Profile",
    "__version__",
    "convert_state_dict",
    "create_model",
    "deploy",
    "export",
    "fuse",
    "get_weights",
    "list_models",
    "list_pretrained",
    "load_checkpoint",
    "load_tflite",
    "make_divisible",
    "profile",
]
