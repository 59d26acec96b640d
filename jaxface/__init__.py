"""jaxface: controllable, disentangled face generators in JAX.

The public API, each loaded on first use (`import jaxface` stays free of JAX):
  jaxface.Generator         a trained DiscoFaceGAN: Generator.load(workdir or exported folder), sample, sweeps
  jaxface.load_generator    a trained StyleGAN2 (InterFaceGAN's Z / W / W+ synthesis)
  jaxface.load_rnet, load_priors, load_idnet, load_parser, load_sof, load_attributes
                            the trained experts and SofGAN's occupancy field
  jaxface.read_run          any training workdir: (config, state as numpy, step)
"""

import importlib

from jaxface.version import __version__

_API = {
    "Generator": "jaxface.runs.disco_generator",
    "load_generator": "jaxface.runs.stylegan2",
    "load_rnet": "jaxface.runs.rnet",
    "load_priors": "jaxface.runs.priors",
    "load_idnet": "jaxface.runs.idnet",
    "load_parser": "jaxface.runs.parser",
    "load_sof": "jaxface.runs.sof",
    "load_attributes": "jaxface.runs.attributes",
    "read_run": "jaxface.runs.workdir",
}
__all__ = ["__version__", *_API]


def __getattr__(name):
  # Named by string and imported on first use: `import jaxface` (and `jaxface --help`) must not import JAX.
  if name in _API:
    return getattr(importlib.import_module(_API[name]), name)
  raise AttributeError(f"module 'jaxface' has no attribute {name!r}")
