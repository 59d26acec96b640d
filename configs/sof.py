r"""SofGAN geometry branch: Semantic Occupancy Field auto-decoder on the synthetic world's multi-view label maps.

Presets (the string after the colon):
  one       overfit ONE instance: 25 training + 5 held-out views at 64², width 128, 512 rays per view (uniform for
            2000 steps, then half of them class-balanced: balancing from step 0 diverged at width 128), batch 8,
            Adam 1e-3 cosine-decayed to 5e-5 over 3500 steps. Target: held-out-view mIoU >= 0.8,
            measured 0.853 (train views 0.864) in 43 min on 2 loaded CPU cores (docs/results_sofgan.md):
              python -m jaxface.main --config configs/sof.py:one --workdir workdirs/sof_one
  multi     many instances (48 x 25 training + 5 held-out views at 64²), width 64, latent 64, batch 8 x 512 rays
            (half class-balanced), Adam 1e-3 cosine-decayed to 1e-4 over 4000 steps (~17 min on 2 CPU cores);
            then GMM sampling and inversion: python -m jaxface.eval.sof --workdir workdirs/sof_multi
              python -m jaxface.main --config configs/sof.py:multi --workdir workdirs/sof_multi
  faithful  as released (Chen et al., ACM TOG 2022): 128² full views (16,384 rays), width/latent/hyper 256,
            10 steps, batch 8, Adam 5e-5; 256 instances x 31 training + 5 held-out views. GPU:
              python -m jaxface.main --config configs/sof.py:faithful --workdir gs://BUCKET/sof
  tiny      tests only (seconds).
Expected: eval/step_N.json `heldout_view_miou` (the one preset: >= 0.8); measured grids in docs/sof_*.png.
The world's camera is perspective (focal 800 px at 256², 10 dm away); scene sphere radius 2.2 dm around
(0, -0.3, -0.7) dm encloses the head (SofGAN: 1.5 around the origin in its scan units).
Other arguments: res=R, instances=N, e.g. configs/sof.py:multi,instances=32.
"""

import ml_collections

from configs import common

PRESETS = ("one", "multi", "faithful", "tiny")


def get_config(arg=""):
  args = common.parse_arg(arg, preset="one", res=0, instances=0)
  if args.preset not in PRESETS:
    from jaxface.errors import ConfigError
    raise ConfigError(f"unknown preset {args.preset!r} for configs/sof.py; use one of {', '.join(PRESETS)}.")
  p = args.preset
  pick = lambda **kw: kw[p]  # noqa: E731  (one value per preset)
  res = args.res or pick(one=64, multi=64, faithful=128, tiny=32)

  config = ml_collections.ConfigDict()
  config.trainer = "sof"  # jaxface/train/<trainer>.py
  config.evals = ("sof",)  # evaluators run when training ends: jaxface/eval/<name>.py `run`
  config.config_file = ""  # filled in by jaxface.config with the file:arg this config came from
  config.batch_size = pick(one=8, multi=8, faithful=8, tiny=2)  # global batch: (instance, view) pairs per step
  config.total_steps = pick(one=3500, multi=4000, faithful=400_000, tiny=30)  # optimizer steps
  common.mesh_and_sharding(config)
  common.run_blocks(config)
  config.ckpt.every_steps = pick(one=1000, multi=1000, faithful=10_000, tiny=10)
  config.log.every_steps = pick(one=100, multi=100, faithful=500, tiny=5)
  config.log.samples_every_steps = pick(one=1000, multi=2000, faithful=10_000, tiny=10 ** 9)
  config.log.num_samples = 8

  config.data = common.data_block(res)  # the synthetic world (kind=synthetic) supplies the label maps

  config.multiview = ml_collections.ConfigDict(dict(
      num_instances=args.instances or pick(one=1, multi=48, faithful=256, tiny=2),  # instances (codes)
      first_instance=0,  # world sample index of instance 0 (held-out instances for inversion start at 10**9)
      num_views=pick(one=30, multi=30, faithful=36, tiny=6),  # views per instance, training + held out
      heldout_views=pick(one=5, multi=5, faithful=5, tiny=2),  # interior views kept out of training per instance
      max_yaw=45.0,  # degrees: views sweep yaw over ±max_yaw
      max_pitch=10.0,  # degrees: views alternate pitch ±max_pitch
      rays_per_view=pick(one=512, multi=512, faithful=0, tiny=64),  # random pixels per view per step (0 = all)
      balance=pick(one=0.5, multi=0.5, faithful=0.0, tiny=0.0),  # fraction of rays drawn class-balanced (0 = uniform)
      balance_after=pick(one=2000, multi=0, faithful=0, tiny=0),  # steps of uniform rays before balancing starts
      orthographic=False,  # the world's renderer is perspective only (data/multiview.py)
  ))

  w = pick(one=128, multi=64, faithful=256, tiny=16)
  config.model = ml_collections.ConfigDict(dict(
      latent_dim=pick(one=64, multi=64, faithful=256, tiny=8),  # per-instance code size
      width=w,  # phi width (SofGAN: 256)
      hyper_hidden=pick(one=128, multi=128, faithful=256, tiny=16),  # hyper-MLP hidden width
      head_hidden=w,  # label head hidden width
      step_hidden=w,  # step MLP hidden width
      steps=pick(one=10, multi=10, faithful=10, tiny=3),  # learned ray-marching steps (SofGAN: 10)
      radius=2.2,  # scene sphere radius (dm) the rays start on
      center=(0.0, -0.3, -0.7),  # scene sphere centre (dm, face-model frame)
      jitter=0.01,  # std of the start point's random offset along the ray during training
  ))

  config.optim = ml_collections.ConfigDict(dict(
      lr=pick(one=1e-3, multi=1e-3, faithful=5e-5, tiny=3e-3),  # Adam learning rate (released: 5e-5)
      b1=0.9,  # Adam beta1
      b2=0.999,  # Adam beta2
      final_lr_fraction=pick(one=0.05, multi=0.1, faithful=1.0, tiny=1.0),  # cosine decay to lr x this (1 = constant)
      grad_clip=0.0,  # global-norm clipping (0 = off, as released)
  ))

  config.loss = ml_collections.ConfigDict(dict(
      w_ce=200.0,  # cross-entropy of the marched point's labels (released l1_weight)
      w_latent=1.0,  # mean(z²) on the batch's codes (released kl_weight)
      w_depth=10.0,  # mean(min(depth, 0)²): no points behind the camera (released 1e-3 x 1e4)
  ))

  config.eval = ml_collections.ConfigDict(dict(
      num_instances=pick(one=1, multi=48, faithful=64, tiny=2),  # instances whose held-out views are scored
  ))
  return config
