"""The same 3 training steps on 1 device and on 8 (data=4 x fsdp=2, sharded parameters) agree."""

import jax
import numpy as np

from jaxface import config as config_lib
from jaxface.train import loop
from tests.train.helpers import TINY, TINY_OVERRIDES


def _config(mesh):
  overrides = config_lib.parse_overrides(TINY_OVERRIDES) + [
      ("total_steps", "3"), ("ckpt.every_steps", "3"), ("log.samples_every_steps", "1000"),
      ("mesh", mesh), ("fsdp_min_size", "0"),
      # Both lazy regularizers on every step: the full step, compiled once per mesh.
      ("loss.r1_interval", "1"), ("loss.pl_interval", "1")]
  return config_lib.build(TINY, overrides)


def test_one_device_equals_eight_devices_with_fsdp(tmp_path):
  one = loop.train(_config("[('data', 1), ('fsdp', 1)]"), str(tmp_path / "one"))
  config8 = _config("[('data', 4), ('fsdp', 2)]")
  eight = loop.train(config8, str(tmp_path / "eight"))

  # Parameters really were sharded over fsdp in the 8-device run.
  sharded = [x for x in jax.tree_util.tree_leaves(eight["G"]["params"]) if "fsdp" in str(x.sharding.spec)]
  assert sharded, "no parameter was sharded over the fsdp axis"
  assert int(one["step"]) == int(eight["step"]) == 3

  one, eight = jax.device_get(one), jax.device_get(eight)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(one), jax.tree_util.tree_leaves(eight)):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=2e-4, atol=2e-5,
                               err_msg=jax.tree_util.keystr(path))
