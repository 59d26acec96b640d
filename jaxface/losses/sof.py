"""SofGAN's occupancy-field objective (the released one): per-ray label cross-entropy, a code prior and a
penalty on negative depth. Shared by training (train/sof.py) and code inversion (edit/sof_codes.py).
"""

import jax.numpy as jnp
import optax


def losses(out, z, labels, lc):
  """The released objective's terms (means over rays / code entries) and the weighted total."""
  ce = optax.softmax_cross_entropy_with_integer_labels(out["logits"], labels).mean()
  latent = jnp.mean(z ** 2)
  depth = jnp.mean(jnp.minimum(out["depth"], 0.0) ** 2)
  total = lc.w_ce * ce + lc.w_latent * latent + lc.w_depth * depth
  return total, {"loss_ce": ce, "loss_latent": latent, "loss_depth": depth}
