"""jaxface: controllable, disentangled face generators in JAX."""

__version__ = "0.1.0"


def __getattr__(name):
  # `jaxface.Generator` without importing JAX at `import jaxface` time.
  if name == "Generator":
    from jaxface.generate import Generator
    return Generator
  raise AttributeError(f"module 'jaxface' has no attribute {name!r}")
