"""The model code, and nothing else: layers, blocks, one spec module per family (``mobilenet_v1`` ...
``mobilenet_v4``, the papers' tables as data), the builder (:mod:`.model`) and the registry. It imports
no training, data, deployment or command-line code; those import it."""

from mobilenets.models.model import MobileNet
from mobilenets.models.registry import build_model, list_models, model_entry

__all__ = ["MobileNet", "build_model", "list_models", "model_entry"]
