"""jaxface: controllable, disentangled face generators in JAX."""

__version__ = "0.1.0"
