"""jaxface.data."""
