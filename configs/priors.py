r"""DiscoFaceGAN's four factor VAEs (identity, expression, light, pose priors) on the jaxface stack.

Presets (the string after the colon):
  synthetic  (default) the synthetic world's mp468 face model: identity id48+tex48 -> latent 96, expression 20 -> 20,
             light 27 -> 16, pose 3 -> 3 (latent = data dims where the world's factors have full rank: with fewer,
             a learned decoder std absorbs the rest as noise and mean decodes fall short of the data's spread);
             trained on the world's true coefficients (9,000 training identities, 40,000 samples; the rest held out).
               python -m jaxface.main --config configs/priors.py --workdir workdirs/priors
             Hardware: CPU is enough (four MLPs); see docs/results_priors.md for steps, wall time and the
             held-out checks (per-dimension mean/std within 10%, energy distance vs a Gaussian).
  bfm        the paper's sizes for BFM09 (identity 160 -> 128, expression 64 -> 32, light 27 -> 16, pose 3 -> 3;
             widths 512/256/128/32), DiscoFaceGAN's schedule (Adam 1e-4 halved every 150 epochs, batch 64,
             400 epochs of ~70k FFHQ rows), on R-Net estimates:
               python -m jaxface.main --config configs/priors.py:bfm --workdir workdirs/priors_bfm \
                   --config.data.coeff_file=coeffs.npz
  tiny       seconds on CPU, for tests.
Other arguments: steps=N overrides total_steps.
A coefficient file (any preset) is an .npz with arrays id, tex, exp, gamma, angle of shape [N, block size].
"""

import ml_collections

from configs import common
from jaxface.errors import ConfigError

# Per preset: face-model block sizes, then (latent, width) of each factor VAE.
PRESETS = {
    "synthetic": (dict(id=48, tex=48, exp=20, gamma=27, angle=3),
                  dict(id=(96, 512), exp=(20, 256), gamma=(16, 128), angle=(3, 32))),
    "bfm": (dict(id=80, tex=80, exp=64, gamma=27, angle=3),
            dict(id=(128, 512), exp=(32, 256), gamma=(16, 128), angle=(3, 32))),
    "tiny": (dict(id=48, tex=48, exp=20, gamma=27, angle=3),
             dict(id=(8, 16), exp=(4, 16), gamma=(4, 16), angle=(3, 8))),
}


def get_config(arg=""):
  args = common.parse_arg(arg, preset="synthetic", steps=0)
  if args.preset not in PRESETS:
    raise ConfigError(f"unknown preset {args.preset!r} for configs/priors.py; use one of {', '.join(PRESETS)}.")
  preset = args.preset
  tiny, bfm = preset == "tiny", preset == "bfm"
  dims, sizes = PRESETS[preset]

  config = ml_collections.ConfigDict()
  config.trainer = "priors"  # jaxface/train/<trainer>.py
  config.config_file = ""  # filled in by jaxface.config with the file:arg this config came from
  config.batch_size = 16 if tiny else 64  # global batch per factor (DiscoFaceGAN: 64)
  # bfm: 400 epochs of ~70k rows at batch 64 (DiscoFaceGAN); synthetic: measured to converge (docs/results_priors.md).
  config.total_steps = args.steps or (20 if tiny else 437_500 if bfm else 20_000)  # optimizer steps (all four VAEs)
  common.mesh_and_sharding(config)
  common.run_blocks(config)
  config.ckpt.every_steps = 10 if tiny else 5000
  config.log.every_steps = 5 if tiny else 500
  config.log.samples_every_steps = 10**9  # the priors make no image grids

  config.data = common.data_block(64)
  config.data.num_identities = 200 if tiny else 10_000
  config.data.coeff_file = ""  # .npz of R-Net estimates (id, tex, exp, gamma, angle); empty = synthetic truth
  config.data.num_samples = 300 if tiny else 40_000  # synthetic training rows of expression/light/pose
  config.data.heldout_samples = 200 if tiny else 5_000  # synthetic held-out rows (the indices after the training ones)
  config.data.heldout_identities = 100 if tiny else 1_000  # the pool's last identities, never trained on
  config.data.heldout_fraction = 0.1  # coefficient files: the last rows held out

  config.priors = ml_collections.ConfigDict(dict(
      factors=("id", "exp", "gamma", "angle"),  # which VAEs to train (DiscoFaceGAN's z order)
      face_dims=dims,  # face model block sizes; a VAE models the concatenation of its blocks (id: id||tex)
      standardize=not bfm,  # z-score each dimension with training-data constants (False: raw, as DiscoFaceGAN)
      init_loggamma=0.0 if bfm else -2.0,  # initial log decoder std (DiscoFaceGAN 0; < 0 avoids collapse when z-scored)
      max_loggamma=1e9 if bfm else -2.0,  # cap on log decoder std (DiscoFaceGAN: none; see jaxface/models/vae.py)
  ))

  config.model = ml_collections.ConfigDict()
  for f, (latent, width) in sizes.items():
    config.model[f] = ml_collections.ConfigDict(dict(
        latent=latent,  # z size of this factor
        width=width,  # hidden width of encoder and decoder
        depth=3,  # hidden Dense+ReLU layers of each
    ))

  config.optim = ml_collections.ConfigDict(dict(
      lr=1e-4 if bfm else 1e-3,  # Adam learning rate (DiscoFaceGAN 1e-4; 1e-3 converges 10x sooner here)
      decay_every_steps=164_000 if bfm else 7_000,  # lr halves every N steps (DiscoFaceGAN: every 150 epochs)
      decay_rate=0.5,  # lr factor at each decay
      beta1=0.9,  # Adam (TF defaults, as DiscoFaceGAN)
      beta2=0.999,  # Adam second-moment decay
  ))

  config.eval = ml_collections.ConfigDict(dict(
      num_samples=200 if tiny else 20_000,  # decoded samples for the per-dimension moments
      test_rows=100 if tiny else 2_000,  # rows per side in the two-sample test (energy distance)
      permutations=50 if tiny else 200,  # permutations for its p-value
      tolerance=0.1,  # pass: |mean gap| <= tol * data std and |std ratio - 1| <= tol, every dimension
  ))
  return config
