"""geodistill.models."""
