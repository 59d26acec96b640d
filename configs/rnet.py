r"""R-Net (3D face reconstruction network) trained on the synthetic face world's ground-truth coefficients.

Presets (the string after the colon):
  small     ResNet-18 layout at half width (32-64-128-256 channels; 1/4 of the FLOPs) at 64x64, batch 32,
            for CPU. Images are rendered on the device inside each step.
              python -m jaxface.main --config configs/rnet.py:small --workdir workdirs/rnet_small
            Hardware: 2 CPU cores (~2-4 s/step, rendering included). Result recorded in docs/results_experts.md.
  faithful  ResNet-50 at 224x224 (Deep3DFaceRecon's R-Net and input size), batch 64, bfloat16 activations,
            photometric loss on. GPU/TPU:
              python -m jaxface.main --config configs/rnet.py:faithful --workdir gs://BUCKET/rnet224
Expected, on held-out samples (written to WORKDIR/eval/step_N.json, or
`python -m jaxface.eval.recon --workdir WORKDIR`): median yaw/pitch/roll error <= 2 deg, landmark error
<= 1.5% of the width, expression and lighting R^2 >= 0.8.
Other arguments: res=R (multiple of 32), depth=18|34|50|101, width=W, e.g. configs/rnet.py:small,res=128.
"""

import ml_collections

from configs import common


def get_config(arg=""):
  args = common.parse_arg(arg, preset="small", res=0, depth=0, width=0)
  if args.preset not in ("small", "faithful"):
    from jaxface.errors import ConfigError
    raise ConfigError(f"unknown preset {args.preset!r} for configs/rnet.py; use small or faithful.")
  small = args.preset == "small"
  res = args.res or (64 if small else 224)

  config = ml_collections.ConfigDict()
  config.trainer = "rnet"  # jaxface/train/<trainer>.py
  config.config_file = ""  # filled in by jaxface.config with the file:arg this config came from
  config.batch_size = 32 if small else 64  # global batch, split over all devices and hosts
  config.total_steps = 1200 if small else 200_000  # optimizer steps (Deep3DFaceRecon: 200k at batch 16)
  common.mesh_and_sharding(config)
  config.compute_dtype = "float32" if small else "bfloat16"
  common.run_blocks(config)
  config.ckpt.every_steps = 250 if small else 5000
  config.log.every_steps = 25 if small else 200
  config.log.samples_every_steps = 10 ** 9  # R-Net makes no images; sample grids are not used

  config.data = common.data_block(res)  # the synthetic world (kind=synthetic) is required: it has the truth
  # Fraction of each batch shown as the bare face-model render of its true coefficients over a blurred, darkened
  # copy of the world image: DiscoFaceGAN's imitation targets and the fakes that imitate them look like that, and
  # an R-Net that only saw world images reads their yaw ~25% short. 0.5 gives a measuring R-Net for generators.
  config.render_mix = 0.0

  config.model = ml_collections.ConfigDict(dict(
      depth=args.depth or (18 if small else 50),  # ResNet depth: 18 (small) or 50 (faithful)
      width=args.width or (32 if small else 64),  # first-stage channels: 64 = torchvision (models/rnet.RNet)
      order="disco",  # coefficient order: "disco" [id, tex, exp, angle, gamma, trans] or "d3dfr" [id, exp, tex, ...]
      stats_samples=4096,  # world samples used to estimate the per-dimension coefficient mean/std
  ))

  config.optim = ml_collections.ConfigDict(dict(
      lr=1e-3 if small else 1e-4,  # AdamW peak learning rate (Deep3DFaceRecon: 1e-4)
      warmup_steps=200 if small else 2000,  # linear warm-up steps
      final_lr_fraction=0.02,  # cosine decay ends at lr * this
      weight_decay=1e-4,  # decoupled weight decay
      grad_clip=10.0,  # global-norm gradient clipping
  ))

  config.loss = ml_collections.ConfigDict(dict(
      w_id=1.0,  # standardised-coefficient MSE weights per group
      w_tex=1.0,  # albedo coefficients
      w_exp=2.0,  # expression and light are what the imitative losses rely on
      w_angle=2.0,  # pose angles
      w_gamma=2.0,  # SH lighting
      w_trans=1.0,  # translation
      w_landmark=100.0,  # squared landmark distance in image widths (1% error -> 1e-4 before weighting)
      w_photo=0.0 if small else 1.0,  # photometric loss through the renderer (costs a render + its gradient)
      w_gamma_mono=0.0,  # Deep3DFaceRecon's monochrome-light prior (its weight 10); 0: truth supervises light
  ))

  config.eval = ml_collections.ConfigDict(dict(
      num_samples=1024,  # held-out samples scored at the end of training
      start=10 ** 9,  # first held-out world index (training draws indices below data.size)
      batch_size=64,  # images per evaluation call
  ))
  return config
