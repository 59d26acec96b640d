"""The default data of every config is the synthetic face world, rendered in the step."""

import glob
import os

import jax
import numpy as np
import pytest

from jaxface import config as config_lib
from jaxface.data.batches import real_images

CONFIGS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "..", "configs", "*.py")))
CONFIGS = [c for c in CONFIGS if os.path.basename(c) not in ("__init__.py", "common.py")]


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_default_data_is_the_synthetic_world(path):
  config = config_lib.build(path)
  if "data" in config:
    assert config.data.kind == "synthetic", f"{path}: default data kind is {config.data.kind!r}"


def test_synthetic_batches_render_to_images_inside_jit():
  config = config_lib.build("configs/stylegan2.py:tiny,res=16", [("batch_size", "2")])
  from jaxface.train import stylegan2
  batch = next(stylegan2.make_data(config))
  assert "image" not in batch  # factors travel; pixels are made on the device
  images = jax.jit(lambda b: real_images(config, b))({k: jax.numpy.asarray(v) for k, v in batch.items()})
  images = np.asarray(images)
  assert images.shape == (2, 16, 16, 3)
  assert images.min() >= -1.0 and images.max() <= 1.0 and images.std() > 0.05
