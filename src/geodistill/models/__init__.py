"""geodistill.models: backbones over timm, GeoModel, refiners, Video2BEV import, cost profiling.

Exports load lazily (``geodistill.lazy``): a config (``ModelConfig``) is read without torch or timm.
"""

from geodistill.lazy import lazy_exports

_HOME = {
    "ALIASES": "backbones",
    "BACKBONES": "backbones",
    "Backbone": "backbones",
    "BackboneSpec": "backbones",
    "Cost": "cost",
    "GeoModel": "geomodel",
    "GeoOutput": "geomodel",
    "ModelConfig": "config",
    "REFINERS": "config",
    "build_refiner": "refiners",
    "config_cost": "cost",
    "create_backbone": "backbones",
    "extract_descriptors": "geomodel",
    "get_spec": "backbones",
    "image_config": "backbones",
    "load_model": "geomodel",
    "load_state_dict": "weights_io",
    "load_video2bev": "video2bev",
    "model_from_config": "geomodel",
    "profile": "cost",
    "save_model": "geomodel",
}
__all__ = sorted(_HOME)
__getattr__, __dir__ = lazy_exports(__name__, _HOME)
