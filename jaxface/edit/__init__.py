"""jaxface.edit."""
