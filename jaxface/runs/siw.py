"""A trained SofGAN texture generator (semantic instance-wise StyleGAN2): the generator a config builds, the
latent pairs it samples, and the parser bootstrap its evaluation scores with. Training: jaxface/train/siw.py.
"""

import jax.numpy as jnp

from jaxface.models import siw as siw_lib
import jax
import ml_collections
from jaxface.runs import expert_cache


def generator(config):
  m = config.model
  return siw_lib.SIWGenerator(
      resolution=m.resolution, z_dim=m.z_dim, w_dim=m.w_dim, mapping_layers=m.mapping_layers,
      mapping_lr_mul=m.mapping_lr_mul, channel_base=m.channel_base, channel_max=m.channel_max,
      seg_res=m.seg_res, enc_widths=tuple(m.enc_widths), spade_resolutions=tuple(m.spade_resolutions),
      spade_hidden=m.spade_hidden, dtype=jnp.dtype(config.compute_dtype), style_impl=m.style_impl)


def sample_z_pairs(key, n, z_dim, distinct_prob):
  """z [n, 2, z_dim]: two independent codes with probability distinct_prob, else one code repeated."""
  k1, k2, k3 = jax.random.split(key, 3)
  z = jax.random.normal(k1, (n, 2, z_dim))
  same = jax.random.uniform(k2, (n,)) >= distinct_prob
  z2 = jnp.where(same[:, None], z[:, 0], jax.random.normal(k3, (n, z_dim)))
  return jnp.stack([z[:, 0], z2], axis=1)


def parser_bootstrap_config(config):
  """The expert config of SofGAN's evaluation parser when config.eval.parser is empty: DiscoFaceGAN's parser
  bootstrap (the same $JAXFACE_CACHE/experts/parser-<hash> directory its runs train)."""
  shim = ml_collections.ConfigDict(dict(
      experts=dict(bootstrap=dict(parser=config.eval.parser_bootstrap,
                                  parser_overrides=dict(config.eval.parser_bootstrap_overrides))),
      data=config.data.to_dict(), seed=config.seed))
  return expert_cache.bootstrap_config(shim, "parser")
