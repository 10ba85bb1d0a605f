"""geodistill.data."""
