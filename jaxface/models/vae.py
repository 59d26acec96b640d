"""DiscoFaceGAN's factor VAEs: the stage-1 model of Dai & Wipf's Two-Stage VAE, one per coefficient group.

Layout (DiscoFaceGAN vae/two_stage_vae_model.py):
  encoder  x -> [Dense(width) + ReLU] x depth -> mu = Dense(latent), log_sigma = Dense(latent)   (both linear)
  decoder  z -> [Dense(width) + ReLU] x depth -> x_hat = Dense(dim)   (linear)
           plus one learned scalar `loggamma_x` (init 0 in DiscoFaceGAN): the decoder's output std is exp(loggamma_x).
Only the decoders are used after training (z ~ N(0, I) -> coefficients); the loss lives in jaxface/train/priors.py.

`shift`/`scale` standardize the data inside the module (x_std = (x - shift) / scale), so one learned scalar
gamma treats dimensions of very different size alike (SH light coefficients are ~50x smaller than shape
coefficients). They are non-trainable constants set from the training data (`standardize=False` in the config
keeps them 0/1, DiscoFaceGAN's raw-coefficient setting). Standardized data sits exactly on the collapse point of
a gamma_x = 1 start (unit data variance = decoder variance: encoding buys nothing, KL costs something; measured:
KL -> 0 for id, exp and pose within 1,500 steps), so standardized runs start at gamma_x = exp(init_loggamma) < 1.
`max_loggamma` caps gamma_x: when the latent has the data's rank, any gamma_x below the smallest data variance gives
the same likelihood, gamma_x drifts up (measured: 0.26 -> 0.43 for identity), and mean decodes lose variance
(std x sqrt(1 - gamma_x^2) for Gaussian-like data); capping it keeps the decoder mean carrying the spread.
Parameters float32; activations in `dtype`.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

# Factor groups, in DiscoFaceGAN's z order (id, exp, gamma, rot). Each VAE models the concatenation of the
# coefficient blocks listed, in that order.
FACTORS = ("id", "exp", "gamma", "angle")
FACTOR_BLOCKS = {"id": ("id", "tex"), "exp": ("exp",), "gamma": ("gamma",), "angle": ("angle",)}


class MLP(nn.Module):
  """[Dense(width) + ReLU] x depth, then a linear Dense(out)."""
  width: int
  depth: int
  out: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = x.astype(self.dtype)
    for i in range(self.depth):
      x = nn.relu(nn.Dense(self.width, dtype=self.dtype, param_dtype=jnp.float32, name=f"fc{i}")(x))
    return nn.Dense(self.out, dtype=self.dtype, param_dtype=jnp.float32, name="out")(x)


class FactorVAE(nn.Module):
  """x [B, dim] -> (x_hat, mu, log_sigma, loggamma_x), all in standardized units; `decode(z)` -> raw units."""
  dim: int
  latent: int
  width: int
  depth: int = 3
  init_loggamma: float = 0.0
  max_loggamma: float = float("inf")
  dtype: jnp.dtype = jnp.float32

  def setup(self):
    self.encoder = MLP(self.width, self.depth, 2 * self.latent, self.dtype)
    self.decoder = MLP(self.width, self.depth, self.dim, self.dtype)
    self.loggamma_x = self.param("loggamma_x", nn.initializers.constant(self.init_loggamma), ())
    # Data standardization: constants (a separate collection, so optimizers never touch them).
    self.shift = self.variable("stats", "shift", lambda: jnp.zeros((self.dim,), jnp.float32))
    self.scale = self.variable("stats", "scale", lambda: jnp.ones((self.dim,), jnp.float32))

  def standardize(self, x):
    return (x.astype(jnp.float32) - self.shift.value) / self.scale.value

  def encode(self, x):
    """Raw x -> (mu, log_sigma) of q(z|x)."""
    h = self.encoder(self.standardize(x)).astype(jnp.float32)
    return h[:, :self.latent], h[:, self.latent:]

  def decode_standardized(self, z):
    return self.decoder(z).astype(jnp.float32)

  def decode(self, z):
    """z [B, latent] -> coefficients [B, dim] in the data's units (the decoder mean; no output noise)."""
    return self.decode_standardized(z) * self.scale.value + self.shift.value

  def __call__(self, x, rng):
    mu, log_sigma = self.encode(x)
    z = mu + jax.random.normal(rng, mu.shape) * jnp.exp(log_sigma)
    return self.decode_standardized(z), mu, log_sigma, jnp.minimum(self.loggamma_x, self.max_loggamma)


def factor_dims(face_dims):
  """Data dimension of each factor VAE from the face model's block sizes, e.g. {"id": 48, "tex": 48, ...}."""
  return {f: sum(int(face_dims[b]) for b in FACTOR_BLOCKS[f]) for f in FACTORS}


def split_blocks(factor, x, face_dims):
  """A factor VAE's output [B, dim] -> {block name: [B, block dim]} (e.g. id -> {"id", "tex"})."""
  out, start = {}, 0
  for b in FACTOR_BLOCKS[factor]:
    n = int(face_dims[b])
    out[b] = x[..., start:start + n]
    start += n
  return out


def join_blocks(factor, coeffs):
  """{block name: [B, n]} -> the factor VAE's data [B, dim] (inverse of split_blocks)."""
  return jnp.concatenate([jnp.asarray(coeffs[b], jnp.float32) for b in FACTOR_BLOCKS[factor]], axis=-1)
