"""The bundled reference generator (pretrained/disco_cpu64) loads from the checkout alone, with no training or
expert workdir, and turns heads to the yaw it is asked for, as its own R-Net reads them."""

import time

import jax.numpy as jnp
import numpy as np


def test_reference_generator_follows_a_requested_yaw():
  import jaxface
  start = time.perf_counter()
  gen = jaxface.Generator.load()  # no argument: pretrained/disco_cpu64
  assert gen.resolution == 64
  loaded = time.perf_counter() - start
  n = 8
  blocks = gen.random_blocks(7, n)  # eight identities with their own expression and light
  read = {}
  for yaw in (-30.0, 0.0, 30.0):
    request = dict(blocks, angle=np.tile(np.deg2rad([0.0, yaw, 0.0]), (n, 1)).astype(np.float32))
    images = gen.generate(request, 3, psi=1.0)
    angles = np.rad2deg(np.asarray(gen.experts.recon(gen.frozen, jnp.asarray(images))["coeffs"]["angle"]))
    read[yaw] = angles[:, 1]  # (pitch, yaw, roll)
  for yaw in (-30.0, 30.0):
    assert abs(np.median(read[yaw]) - yaw) <= 5.0, (yaw, read[yaw], f"load {loaded:.1f} s")
    assert np.all(np.sign(read[yaw]) == np.sign(yaw)), read[yaw]  # every identity turns the right way
  assert np.all(read[30.0] - read[-30.0] > 40.0), read  # and each one turns across the whole range
