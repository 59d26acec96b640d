"""The package version, apart from jaxface/__init__.py so the CLI can print it without importing the API."""

__version__ = "0.1.0"
