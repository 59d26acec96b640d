"""jaxface.bench."""
