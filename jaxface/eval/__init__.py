"""jaxface.eval."""
