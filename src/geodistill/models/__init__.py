"""geodistill.models: backbones over timm, GeoModel, refiners, Video2BEV import, cost profiling."""

from geodistill.models.backbones import (
    ALIASES,
    BACKBONES,
    Backbone,
    BackboneSpec,
    create_backbone,
    get_spec,
    image_config,
)
from geodistill.models.cost import Cost, config_cost, profile
from geodistill.models.geomodel import (
    GeoModel,
    GeoOutput,
    ModelConfig,
    extract_descriptors,
    load_model,
    model_from_config,
    save_model,
)
from geodistill.models.refiners import REFINERS, build_refiner
from geodistill.models.video2bev import load_video2bev
from geodistill.models.weights_io import load_state_dict

__all__ = [
    "ALIASES",
    "BACKBONES",
    "REFINERS",
    "Backbone",
    "BackboneSpec",
    "Cost",
    "GeoModel",
    "GeoOutput",
    "ModelConfig",
    "build_refiner",
    "config_cost",
    "create_backbone",
    "extract_descriptors",
    "get_spec",
    "image_config",
    "load_model",
    "load_state_dict",
    "load_video2bev",
    "model_from_config",
    "profile",
    "save_model",
]
