r"""StyleGAN2 (config F) baseline on the jaxface stack.

Presets (the string after the colon):
  tiny      CPU, 32x32, small widths, seconds per step on a laptop; trains on the built-in synthetic face world.
              python -m jaxface.main --config configs/stylegan2.py:tiny --workdir workdirs/sg2_tiny
            Expected (measured, 2 loaded CPU cores): 300 steps = 2.4 kimg in about 5 minutes, ~10 img/s; the
            samples are still coloured noise with face-toned blobs then. Faces need on the order of 100+ kimg
            (hours on CPU; not yet measured here).
  world64   CPU reference generator for the editing methods (InterFaceGAN, identity mapping): the tiny widths at
            64x64 on the synthetic world, trained long enough for faces with pose, identity and attributes.
              python -m jaxface.main --config configs/stylegan2.py:world64 --workdir workdirs/sg2_world64
  paper256  StyleGAN2-ADA's `paper256` recipe (256x256, batch 64, channel_base 16384, lr 0.0025, gamma 1,
            EMA 20 kimg, mbstd group 8) without ADA, in bfloat16. Needs real data at 256x256 (a prepared
            ArrayRecord folder or an image folder: --config.data.kind=arrayrecord --config.data.path=DIR).
              python -m jaxface.main --config configs/stylegan2.py:paper256 --workdir gs://BUCKET/sg2_256 \
                  --config.data.kind=arrayrecord --config.data.path=/data/ffhq256
            Hardware: one or more GPUs / a TPU slice; `python -m jaxface.bench.train --config
            configs/stylegan2.py:paper256` measures img/s and MFU.
Other arguments: res=R sets the resolution (power of two), e.g. configs/stylegan2.py:tiny,res=64.
"""

import ml_collections

from configs import common


def get_config(arg=""):
  args = common.parse_arg(arg, preset="tiny", res=0)
  if args.preset not in ("tiny", "world64", "paper256"):
    from jaxface.errors import ConfigError
    raise ConfigError(f"unknown preset {args.preset!r} for configs/stylegan2.py; use tiny, world64 or paper256.")
  world64 = args.preset == "world64"
  tiny = args.preset == "tiny" or world64  # world64 = the tiny widths and rates, longer, at 64x64
  res = args.res or (64 if world64 else 32 if tiny else 256)

  config = ml_collections.ConfigDict()
  config.trainer = "stylegan2"  # jaxface/train/<trainer>.py
  config.evals = ()  # evaluators run when training ends (none: the methods built on this generator measure it)
  config.config_file = ""  # filled in by jaxface.config with the file:arg this config came from
  config.batch_size = 8 if tiny else 64  # global batch, split over all devices and hosts
  config.total_steps = 12_000 if world64 else 300 if tiny else 25_000_000 // 64  # optimizer steps (paper256: 25,000 kimg)
  common.mesh_and_sharding(config)
  config.compute_dtype = "float32" if tiny else "bfloat16"
  common.run_blocks(config)
  if world64:
    config.ckpt.every_steps = 250
    config.log.every_steps = 50
    config.log.samples_every_steps = 1000
  elif tiny:
    config.ckpt.every_steps = 100
    config.log.every_steps = 10
    config.log.samples_every_steps = 100
  else:
    config.ckpt.every_steps = 2000
    config.log.every_steps = 100
    config.log.samples_every_steps = 2000

  config.data = common.data_block(res)

  config.model = ml_collections.ConfigDict(dict(
      resolution=res,  # output resolution (power of two)
      z_dim=64 if tiny else 512,  # latent size
      w_dim=64 if tiny else 512,  # intermediate latent size
      mapping_layers=2 if tiny else 8,  # mapping network depth
      mapping_lr_mul=0.01,  # learning-rate multiplier of the mapping network
      channel_base=16384,  # channels at resolution r = min(channel_base // r, channel_max)
      d_channel_base=16384,  # the same for the discriminator
      channel_max=64 if tiny else 512,  # widest layer
      mbstd_group_size=4 if tiny else 8,  # minibatch-stddev group size
  ))

  lr = 0.002 if tiny else 0.0025
  config.optim_G = ml_collections.ConfigDict(dict(lr=lr, beta1=0.0, beta2=0.99, eps=1e-8))  # Adam for G
  config.optim_D = ml_collections.ConfigDict(dict(lr=lr, beta1=0.0, beta2=0.99, eps=1e-8))  # Adam for D

  config.loss = ml_collections.ConfigDict(dict(
      r1_gamma=1.0 if not tiny else 0.1,  # R1 weight (gamma); 0 disables
      r1_interval=16 if not tiny else 4,  # lazy R1 every N steps
      pl_weight=2.0,  # path-length weight; 0 disables
      pl_interval=4,  # lazy path-length every N steps
      pl_decay=0.01,  # EMA rate of the path-length target
      pl_batch_shrink=2,  # path-length batch = batch_size // this
      style_mixing_prob=0.9,  # probability of mixing two latents at a random layer
      ema_kimg=20.0 if not tiny else 1.0,  # EMA half-life of G_ema in thousands of images
      ema_rampup=0.0 if not tiny else 0.05,  # EMA half-life ramp-up as a fraction of images seen (0 = off)
      w_avg_beta=0.995,  # running mean of W for truncation
  ))
  return config
