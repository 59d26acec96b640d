"""DiscoFaceGAN's factor priors once trained: the four VAEs a config builds, their frozen decoders (optionally
through the latent Gaussian fit, LATENT_FIT) and `load_priors(workdir)`. Training: jaxface/train/priors.py; its
data: runs/priors_data.py.
"""

import os

import jax.numpy as jnp
import numpy as np

from jaxface.errors import CheckpointError, ConfigError
from jaxface.models import vae as vae_lib
from jaxface.runs.workdir import read_run


def factors(config):
  fs = tuple(config.priors.factors)
  bad = [f for f in fs if f not in vae_lib.FACTORS]
  if bad or not fs:
    raise ConfigError(f"config.priors.factors={list(fs)} must be a non-empty subset of {list(vae_lib.FACTORS)}.")
  return fs


def face_dims(config):
  return {k: int(v) for k, v in config.priors.face_dims.items()}


def model(config, factor):
  m = config.model[factor]
  return vae_lib.FactorVAE(dim=vae_lib.factor_dims(face_dims(config))[factor], latent=m.latent, width=m.width,
                           depth=m.depth, init_loggamma=config.priors.init_loggamma,
                           max_loggamma=config.priors.max_loggamma,
                           dtype=jnp.dtype(config.compute_dtype))


def decoder(config, factor, params, stats):
  """Pure function z [B, latent] -> coefficients [B, dim] (the decoder mean, float32)."""
  vae = model(config, factor)
  variables = {"params": params, "stats": stats}
  return lambda z: vae.apply(variables, z, method="decode")


LATENT_FIT = "latent_fit.npz"  # written by `evaluate`: per factor, the aggregate posterior's Gaussian fit


def fitted_decoder(decode, mean, chol):
  """z ~ N(0, I) -> decode(mean + chol z): samples the latent Gaussian the encoder actually filled."""
  mean, chol = jnp.asarray(mean), jnp.asarray(chol)
  return lambda z: decode(mean + z @ chol.T)


def load_priors(workdir, step=None, raw=False):
  """Frozen factor decoders of a `configs/priors.py` training.

  Returns {"decoders": {factor: fn z -> [B, dim]}, "latent": {factor: latent size},
  "split": fn(factor, x) -> {block: [B, n]}, "face_dims": {block: n}, "step": step, "fitted": bool}.
  With `fitted` (workdir/latent_fit.npz from the end-of-training evaluation, or `python -m jaxface.eval.priors`),
  each decoder maps z ~ N(0, I) through the aggregate posterior's Gaussian first; `raw=True` skips that."""
  config, state, step = read_run(workdir, step)
  if config.get("trainer") != "priors":
    raise CheckpointError(f"{workdir} was trained by {config.get('trainer')!r}, not the priors method; pass the "
                          f"workdir of a configs/priors.py run.")
  dims = face_dims(config)
  fs = factors(config)
  decoders = {f: decoder(config, f, state[f]["params"], state[f]["stats"]) for f in fs}
  fit_path = os.path.join(workdir, LATENT_FIT)
  fitted = not raw and os.path.isfile(fit_path)
  if fitted:
    with np.load(fit_path) as z:
      decoders = {f: fitted_decoder(decoders[f], z[f"{f}/mean"], z[f"{f}/chol"]) for f in fs}
  return {"decoders": decoders, "fitted": fitted,
          "latent": {f: int(config.model[f].latent) for f in fs},
          "split": lambda factor, x: vae_lib.split_blocks(factor, x, dims), "face_dims": dims, "step": step}
