"""geodistill.train."""
