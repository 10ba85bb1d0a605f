"""geodistill.eval."""
