"""geodistill: cross-view drone geo-localization by two-stage hierarchical distillation.

Layers (imports flow one way): data -> models -> train -> eval -> platform; leaderboard
reads eval and models. Nothing below ``platform`` imports Ray.
"""

__version__ = "0.1.0"
