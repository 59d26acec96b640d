"""SIW-StyleGAN2 (SofGAN texture branch): two-style modulated convs, region blending, locality, batch semantics."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxface.edit import region
from jaxface.errors import UserError
from jaxface.models import siw
from jaxface.models.layers import ModulatedConv, ToRGB, demod_coefficients


def key(i):
  return jax.random.key(i, impl="rbg")


def assert_close(a, b, tol=1e-5):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  assert a.shape == b.shape, (a.shape, b.shape)
  err = np.abs(a - b).max()
  assert err <= tol * max(1.0, np.abs(b).max()), err


def _labels(b=1, size=16, seed=0):
  """Face-like 17-class label maps: background, a skin disc, hair on top, two eyes."""
  yy, xx = np.mgrid[:size, :size] / size
  out = np.zeros((b, size, size), np.int32)
  for i in range(b):
    r = 0.32 + 0.04 * ((seed + i) % 3)
    face = (yy - 0.55) ** 2 + (xx - 0.5) ** 2 < r ** 2
    out[i][face] = 1
    out[i][face & (yy < 0.4)] = 15
    out[i][(np.abs(yy - 0.55) < 0.06) & (np.abs(np.abs(xx - 0.5) - 0.13) < 0.06)] = 3
  return out


def _conv_inputs(b=2, h=8, cin=6, w_dim=5, seed=0):
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.standard_normal((b, h, h, cin)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((b, 2, w_dim)), jnp.float32)
  return x, w


@pytest.mark.parametrize("up", [1, 2])
def test_one_hot_mask_reproduces_single_style_conv(up):
  x, w = _conv_inputs()
  conv = siw.SIWConv(4, up=up, noise_id=7)
  mask = jnp.zeros((2, 2, 5, 5))
  params = conv.init(key(0), x, w, mask, None, "const")["params"]
  params = dict(params, noise_strength=jnp.asarray(0.3), bias=jnp.linspace(-0.5, 0.5, 4))
  single = ModulatedConv(4, up=up, noise_id=7)
  rgb, rgb1 = siw.SIWToRGB(3), ToRGB(3)
  p_rgb = rgb.init(key(1), x, w, mask)["params"]

  @jax.jit
  def run(onehot, k):
    return (conv.apply({"params": params}, x, w, onehot, None, "const"),
            single.apply({"params": params}, x, jnp.take(w, k, axis=1), "const"),
            rgb.apply({"params": p_rgb}, x, w, onehot), rgb1.apply({"params": p_rgb}, x, jnp.take(w, k, axis=1)))

  for k in (0, 1):
    got, want, got_rgb, want_rgb = run(jnp.zeros((2, 2, 5, 5)).at[:, k].set(1.0), k)
    assert_close(got, want)
    assert_close(got_rgb, want_rgb)


def _numpy_modconv(x, weight, styles):
  """Independent reference: per-sample weights W_b = W * s_b, normalised per output channel, 'same' correlation."""
  b, h, wd, _ = x.shape
  k = weight.shape[0]
  out = np.zeros((b, h, wd, weight.shape[-1]))
  xp = np.pad(x, ((0, 0), (k // 2, k // 2), (k // 2, k // 2), (0, 0)))
  for n in range(b):
    wb = weight * styles[n][None, None, :, None]
    wb = wb / np.sqrt((wb ** 2).sum(axis=(0, 1, 2), keepdims=True) + 1e-8)
    for i in range(h):
      for j in range(wd):
        out[n, i, j] = np.einsum("abc,abco->o", xp[n, i:i + k, j:j + k], wb)
  return out


def test_two_style_conv_matches_numpy_and_paths_agree():
  rng = np.random.default_rng(1)
  x = rng.standard_normal((2, 5, 5, 3)).astype(np.float32)
  weight = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
  styles = rng.standard_normal((2, 2, 3)).astype(np.float32)
  grouped = siw.two_style_conv(jnp.asarray(x), jnp.asarray(weight), jnp.asarray(styles), impl="grouped")
  vmapped = siw.two_style_conv(jnp.asarray(x), jnp.asarray(weight), jnp.asarray(styles), impl="vmap")
  assert_close(grouped, vmapped)
  for k in (0, 1):
    assert_close(grouped[:, k], _numpy_modconv(x, weight, styles[:, k]), tol=1e-4)
  # The whole generator agrees between the two paths too.
  (g, params), (g2, _) = _generator(), _generator(style_impl="vmap")
  seg, ws, mask = _gen_inputs(g, 2)
  synth = lambda m: jax.jit(lambda *a: m.apply({"params": params}, *a, method="synthesize"))(seg, ws, mask)
  assert_close(synth(g), synth(g2), tol=1e-4)


def test_demodulated_weights_have_unit_norm():
  rng = np.random.default_rng(2)
  weight = jnp.asarray(rng.standard_normal((3, 3, 6, 5)), jnp.float32)
  styles = jnp.asarray(rng.standard_normal((4, 6)) * 3, jnp.float32)
  d = demod_coefficients(weight, styles)
  wb = weight[None] * styles[:, None, None, :, None] * d[:, None, None, None, :]  # [B, k, k, I, O]
  norms = np.sqrt(np.square(np.asarray(wb, np.float64)).sum(axis=(1, 2, 3)))
  assert_close(norms, np.ones((4, 5)), tol=1e-5)


def test_resize_matches_torch_align_corners():
  x = np.random.default_rng(3).standard_normal((2, 7, 5, 3)).astype(np.float32)
  for h, w in ((16, 10), (3, 2), (7, 5)):
    want = torch.nn.functional.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), size=(h, w), mode="bilinear",
                                           align_corners=True).permute(0, 2, 3, 1).numpy()
    assert_close(siw.resize_bilinear(jnp.asarray(x), h, w), want)


def test_feature_level_region_locality():
  """Changing style 1 leaves the blended features unchanged wherever the resized mask gives it zero weight."""
  x, w = _conv_inputs(b=1, h=8)
  labels = jnp.asarray(_labels(1, 16))
  mask = region.region_mask(labels, "hair")  # [1, 2, 16, 16] at label resolution, layer at 8x8 / 16x16
  for up in (1, 2):
    conv = siw.SIWConv(4, up=up)
    params = conv.init(key(0), x, w, mask, None, "const")["params"]
    apply = jax.jit(lambda w_, c=conv, p=params: c.apply({"params": p}, x, w_, mask, None, "const"))
    a, b = apply(w), apply(w.at[:, 1].add(3.0))
    m1 = np.asarray(siw.resize_bilinear(jnp.moveaxis(mask, 1, -1), a.shape[1], a.shape[2]))[0, ..., 1]
    diff = np.abs(np.asarray(a - b))[0].max(-1)
    assert (m1 == 0).any() and (m1 > 0.5).any()
    assert diff[m1 == 0].max() == 0.0
    assert diff[m1 > 0.5].min() > 1e-4


@functools.lru_cache(maxsize=None)
def _generator(style_impl="grouped", res=16):
  g = siw.SIWGenerator(resolution=res, z_dim=8, w_dim=8, mapping_layers=2, channel_base=64, channel_max=8,
                       seg_res=32, enc_widths=(4, 4, 8), spade_resolutions=(8, 16), spade_hidden=4,
                       style_impl=style_impl)
  seg = jnp.zeros((1, 32, 32, 17))
  params = jax.jit(g.init)({"params": key(0), "noise": key(1)}, seg, jnp.zeros((1, 2, 8)),
                           jnp.ones((1, 2, 32, 32)))["params"]
  params = jax.tree_util.tree_map_with_path(
      lambda p, a: jnp.full_like(a, 0.3) if p[-1].key == "noise_strength" else a, params)
  return g, params


def _gen_inputs(g, b, seed=0):
  labels = jnp.asarray(_labels(b, 32, seed))
  seg = region.onehot(labels, 32)
  ws = jax.random.normal(key(seed + 5), (b, 2, g.num_ws, 8))
  mask = region.random_group_masks(key(seed + 6), labels)
  return seg, ws, mask


def test_batch_of_two_equals_two_batches_of_one():
  g, params = _generator()
  seg, ws, mask = _gen_inputs(g, 2)
  synth = jax.jit(lambda s, w, m: g.apply({"params": params}, s, w, m, method="synthesize"))
  both = synth(seg, ws, mask)
  assert both.shape == (2, 16, 16, 3)
  for i in range(2):
    assert_close(both[i:i + 1], synth(seg[i:i + 1], ws[i:i + 1], mask[i:i + 1]), tol=1e-5)
  assert np.abs(np.asarray(both[0] - both[1])).max() > 1e-3  # the two samples really differ


def test_output_level_locality_and_region_edit():
  g, params = _generator()
  labels = _labels(4, 32)
  w_base = jax.random.normal(key(7), (4, 8))
  w_new = jax.random.normal(key(8), (4, 8)) * 2
  base = region.region_edit(g, params, labels, w_base, w_new, "hair", alpha=0.0)
  edit = region.region_edit(g, params, labels, w_base, w_new, "hair", alpha=1.0)
  same = region.generate(g, params, labels, jnp.stack([w_base, w_base], 1))  # mask None = style 0 only
  assert_close(base, same, tol=1e-5)  # alpha 0 is the base image
  inside = np.asarray(region.nearest_resize(jnp.asarray(labels), 16)) == 15
  delta = np.abs(np.asarray(edit - base)).mean(-1)
  ratio = delta[inside].mean() / delta[~inside].mean()
  assert ratio > 5.0, ratio


def test_bad_inputs_raise_user_errors():
  g, params = _generator()
  seg, ws, mask = _gen_inputs(g, 1)
  with pytest.raises(UserError, match="one pair per image"):
    g.apply({"params": params}, seg, ws[:, :1], mask, method="synthesize")  # one style, not two
  with pytest.raises(UserError, match="one channel per style"):
    g.apply({"params": params}, seg, ws, mask[:, :1], method="synthesize")
  with pytest.raises(UserError, match="one-hot"):
    g.apply({"params": params}, seg[..., :16], ws, mask, method="synthesize")
  with pytest.raises(UserError, match="batch size"):
    g.apply({"params": params}, jnp.concatenate([seg, seg]), ws, mask, method="synthesize")
