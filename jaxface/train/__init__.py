"""jaxface.train."""
