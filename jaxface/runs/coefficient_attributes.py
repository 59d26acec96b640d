"""The synthetic world's attributes read through R-Net: InterFaceGAN's `world_coefficients` predictor.

The world defines smile, skin tone, key-light side, yaw, pitch and roll as functions of a face's 3DMM coefficients, and
its gender-like and age-like factors enter the identity and texture coefficients linearly
(data/synthetic_factors.py). R-Net reads those coefficients back from an image, so applying the world's own
formulas to its read-back scores any image of a face on the world's terms, as well as R-Net reads the coefficients
(at 64x64 and the bundled R-Net's size: yaw, pitch, skin tone and light well, gender-like fairly, expression and
so smile hardly at all; docs/results_interfacegan.md). Scores, in SCORE_NAMES order:
  smile      mean of the smile_l / smile_r expression units
  gender     gender-like factor, the world's least-squares read-out from (id, tex)
             (synthetic_factors.gender_age_readout)
  age        age-like factor, the same read-out (noisier: ~0.48 of its variance is linear in the coefficients)
  skin_tone  the albedo's lightness coefficient tex[0]
  light_x    the key light's horizontal component (-mean over colours of the band-1 x SH coefficient)
  yaw, pitch head angles in degrees
  roll       the head's in-plane tilt in degrees
The R-Net is the one bundled with the reference generator (pretrained/disco_cpu64: trained on world images and bare
renders, never trained against by that generator), or that of a configs/rnet.py workdir of the same architecture.
"""

import functools

import jax
import numpy as np

from jaxface.data import synthetic_factors as sf

SCORE_NAMES = ("smile", "gender", "age", "skin_tone", "light_x", "yaw", "pitch", "roll")


def scores_from_coefficients(coeffs, readout):
  """R-Net coefficients (dict of [N, ...] arrays: id, tex, exp, gamma, angle) -> scores [N, len(SCORE_NAMES)]."""
  c = sf.coefficient_attributes(coeffs["exp"], coeffs["tex"], coeffs["gamma"], coeffs["angle"])
  x = np.concatenate([np.asarray(coeffs["id"], np.float64), np.asarray(coeffs["tex"], np.float64),
                      np.ones((len(c["yaw"]), 1))], -1)
  c["gender"], c["age"] = (x @ readout).T
  return np.stack([c[k] for k in SCORE_NAMES], -1)


@functools.lru_cache(maxsize=None)
def _readout():
  return sf.gender_age_readout()


def load(rnet_workdir=None):
  """images [N, H, W, 3] in [-1, 1] -> scores [N, len(SCORE_NAMES)], with the bundled reference generator's R-Net
  or that of `rnet_workdir`."""
  from jaxface.runs.disco_generator import Generator  # JAX and the bundle: only when a command scores images
  gen = Generator.load()
  if rnet_workdir:
    gen.measure_with(rnet_workdir=rnet_workdir)
  recon = jax.jit(gen.experts.recon)
  frozen = gen.frozen

  def scores(images):
    coeffs = jax.device_get(recon(frozen, images)["coeffs"])
    return scores_from_coefficients(coeffs, _readout())

  return scores
