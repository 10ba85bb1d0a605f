"""geodistill.platform."""
