"""Weights: converters from torchvision, timm and TFLite, and the download cache."""

from mobilenets.weights.convert import convert_state_dict
from mobilenets.weights.hub import load_pretrained

__all__ = ["convert_state_dict", "load_pretrained"]
