"""Renderer benchmark: the 70k-triangle face (35,709 vertices / 70,789 triangles, BFM-sized) through the
whole `render` (3DMM decode, normals, SH, projection, rasterize, interpolate, antialias), vmapped over a
batch, forward and forward+backward (gradient of an image loss w.r.t. all coefficients).

  python -m jaxface.bench.render                 # 224² and 256², batch 16 and 64, fwd and fwd+bwd
  python -m jaxface.bench.render --quick         # 224² and 256², batch 16, fewer iterations
  python -m jaxface.bench.render --resolutions 256 --batches 64 --modes fwdbwd
  python -m jaxface.bench.render --picture docs/render_mean_face.png   # also save the pose/light grid

Prints a table and appends one line per configuration to bench/results.jsonl. The targets: on one
H100, fwd+bwd of 64 renders at 256² in <= 5 ms; on CPU, forward within 3x of a plain OpenGL software
rasterizer: `--gl` times Mesa's OpenGL software rasterizer (llvmpipe, via the `moderngl` package and EGL)
drawing the same mesh, clip-space positions and vertex colours with a depth test and reading the image
back, against jaxface's rasterize + interpolate + antialias on the same inputs (mode "raster").
"""

import time

import numpy as np

from jaxface import cli as cli_lib
from jaxface.cli import lazy_import
from jaxface.errors import cli

# Imported on first use: `--help` and argument mistakes answer without loading JAX.
jax = lazy_import("jax")
jnp = lazy_import("jax.numpy")
common = lazy_import("jaxface.bench.common")
cam_lib = lazy_import("jaxface.render.camera")
facegrid = lazy_import("jaxface.render.facegrid")
render_lib = lazy_import("jaxface.render.render")



def random_coeffs(fm, batch, seed=0):
  rng = np.random.default_rng(seed)
  f = lambda n, s: jnp.asarray(rng.normal(size=(batch, n)) * s, jnp.float32)  # noqa: E731
  return dict(id=f(fm.n_id, 1.0), exp=f(fm.n_exp, 1.0), tex=f(fm.n_tex, 1.0), angle=f(3, 0.2),
              gamma=f(27, 0.1), trans=f(3, 0.05))


def make_fns(fm, res):
  cam = cam_lib.camera_preset("disco256") if res == 256 else cam_lib.camera_preset("d3dfr224")

  def one(c):
    return render_lib.render(fm, c, cam, (res, res))["image"]

  fwd = jax.jit(jax.vmap(one))

  def loss(c, target):
    return jnp.mean((jax.vmap(one)(c) - target) ** 2)

  fwdbwd = jax.jit(jax.value_and_grad(loss))
  return fwd, fwdbwd


def run(resolutions, batches, modes, iters, warmup=1):
  fm = facegrid.procedural_face_model()
  rows = []
  for res in resolutions:
    fwd, fwdbwd = make_fns(fm, res)
    for batch in batches:
      coeffs = random_coeffs(fm, batch)
      target = jnp.zeros((batch, res, res, 3), jnp.float32)
      for mode in modes:
        fn, args = (fwd, (coeffs,)) if mode == "fwd" else (fwdbwd, (coeffs, target))
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        compile_s = time.perf_counter() - t0
        sec = common.time_fn(fn, *args, warmup=warmup, iters=iters)
        config = dict(mesh="procedural70k", vertices=fm.n_vertices, triangles=int(fm.render_tri.shape[0]),
                      resolution=res, batch=batch, mode=mode, iters=iters)
        fig = dict(ms=sec * 1e3, renders_per_s=batch / sec, ms_per_render=sec * 1e3 / batch,
                   first_call_s=compile_s)
        common.record("render", config, fig)
        rows.append({**config, **fig})
  common.print_table(rows, ["resolution", "batch", "mode", "ms", "ms_per_render", "renders_per_s",
                            "first_call_s"])
  return rows


def raster_inputs(fm, res, batch, seed=0):
  """Clip-space positions [B,V,4] and SH-shaded vertex colours [B,V,3] of random faces (host arrays)."""
  cam = cam_lib.camera_preset("disco256") if res == 256 else cam_lib.camera_preset("d3dfr224")
  coeffs = random_coeffs(fm, batch, seed)

  def one(c):
    verts, normals = render_lib.face_geometry(fm, c)
    return cam_lib.project_clip(cam, verts), render_lib.vertex_colors(fm, c, normals)
  pos, col = jax.jit(jax.vmap(one))(coeffs)
  return np.asarray(pos), np.asarray(col)


def run_raster(fm, res, batch, iters, batch_mode="vmap"):
  """jaxface rasterize + interpolate + antialias alone on given positions/colours, over the batch with
  `jax.vmap` or `jax.lax.map` (one image after another, like the GL loop; faster on XLA:CPU)."""
  from jaxface.render import rasterize as rast  # JAX: loaded once the command runs, not for --help
  tri = fm.render_tri

  def one(pos, col):
    frags = rast.rasterize(pos, tri, (res, res))
    return rast.antialias(rast.interpolate(col, frags, tri), frags, pos, tri, fm.render_topology)
  if batch_mode == "vmap":
    fn = jax.jit(jax.vmap(one))
  else:
    fn = jax.jit(lambda p, c: jax.lax.map(lambda pc: one(*pc), (p, c)))
  pos, col = (jnp.asarray(a) for a in raster_inputs(fm, res, batch))
  return common.time_fn(fn, pos, col, warmup=1, iters=iters)


def run_gl(fm, res, batch, iters):
  """Mesa llvmpipe via moderngl: upload positions/colours, draw with depth test, read back; per batch."""
  import moderngl  # optional, bench-only dependency
  ctx = moderngl.create_standalone_context(backend="egl")
  prog = ctx.program(
      vertex_shader="#version 330\nin vec4 in_pos; in vec3 in_col; out vec3 v_col;\n"
                    "void main() { gl_Position = in_pos; v_col = in_col; }",
      fragment_shader="#version 330\nin vec3 v_col; out vec4 f_col;\nvoid main() { f_col = vec4(v_col, 1.0); }")
  fbo = ctx.framebuffer(color_attachments=[ctx.texture((res, res), 4, dtype="f4")],
                        depth_attachment=ctx.depth_renderbuffer((res, res)))
  pos, col = raster_inputs(fm, res, batch)
  n_v = pos.shape[1]
  vbo_pos, vbo_col = ctx.buffer(reserve=n_v * 16), ctx.buffer(reserve=n_v * 12)
  ibo = ctx.buffer(np.asarray(fm.render_tri, np.int32).tobytes())
  vao = ctx.vertex_array(prog, [(vbo_pos, "4f", "in_pos"), (vbo_col, "3f", "in_col")], index_buffer=ibo,
                         index_element_size=4)
  ctx.enable(moderngl.DEPTH_TEST)

  def draw_batch():
    out = []
    for i in range(batch):
      vbo_pos.write(pos[i].astype(np.float32).tobytes())
      vbo_col.write(col[i].astype(np.float32).tobytes())
      fbo.use()
      fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
      vao.render(moderngl.TRIANGLES)
      out.append(np.frombuffer(fbo.read(components=4, dtype="f4"), np.float32))
    return out
  draw_batch()
  times = []
  for _ in range(iters):
    t0 = time.perf_counter()
    draw_batch()
    times.append(time.perf_counter() - t0)
  info = ctx.info["GL_RENDERER"]
  ctx.release()
  return float(np.median(times)), info


def compare_gl(resolutions, batch, iters):
  fm = facegrid.procedural_face_model()
  rows = []
  for res in resolutions:
    try:
      gl_s, renderer = run_gl(fm, res, batch, iters)
    except Exception as e:  # no moderngl / no EGL: say so instead of failing the benchmark
      print(f"OpenGL baseline unavailable: {type(e).__name__}: {e}")
      return rows
    for batch_mode in ("vmap", "map"):
      jx_s = run_raster(fm, res, batch, iters, batch_mode)
      config = dict(mesh="procedural70k", triangles=int(fm.render_tri.shape[0]), resolution=res, batch=batch,
                    mode="raster_vs_gl", batch_mode=batch_mode, gl=renderer, iters=iters)
      fig = dict(jax_ms_per_render=jx_s * 1e3 / batch, gl_ms_per_render=gl_s * 1e3 / batch,
                 ratio_jax_over_gl=jx_s / gl_s)
      common.record("render", config, fig)
      rows.append({**config, **fig})
  common.print_table(rows, ["resolution", "batch", "batch_mode", "gl", "jax_ms_per_render", "gl_ms_per_render",
                            "ratio_jax_over_gl"])
  return rows


def save_picture(path, model="mp468", res=192):
  """The mean face under several poses (rows) and lights (columns), as one PNG."""
  from jaxface.render import face_models  # JAX: `--help` answers without loading it
  from PIL import Image

  try:
    fm = face_models.load_face_model(model, level=2) if model == "mp468" else facegrid.procedural_face_model()
  except Exception as e:  # the built-in model may be missing in a partial checkout
    print(f"mp468 unavailable ({e}); using the procedural 70k face")
    fm = facegrid.procedural_face_model()
  cam = cam_lib.camera_preset("disco256")
  poses = [(0.0, 0.0, 0.0), (0.0, 0.6, 0.0), (0.0, -0.6, 0.0), (0.35, 0.0, 0.0), (-0.3, 0.3, 0.2)]
  lights = []
  # ambient only; from below (band 1 is -y); frontal (band 2 is +z); from above and front; coloured sides.
  for g in ([0, 0, 0], [0, 0.4, 0], [0, 0, 0.3], [0, -0.4, 0.2]):
    gam = np.zeros((3, 9), np.float32)
    gam[:, :len(g)] = g
    lights.append(gam.reshape(-1))
  lights.append(np.concatenate([np.r_[0.1, 0, 0, 0.3, 0, 0, 0, 0, 0], np.zeros(9), np.r_[-0.3, 0, 0, -0.3,
                                                                                         0, 0, 0, 0, 0]]))
  z = lambda n: jnp.zeros((n,), jnp.float32)  # noqa: E731
  one = jax.jit(lambda a, g: render_lib.render(fm, dict(id=z(fm.n_id), exp=z(fm.n_exp), tex=z(fm.n_tex),
                                                        angle=a, gamma=g, trans=z(3)), cam, (res, res))["image"])
  tiles = [[np.asarray(one(jnp.asarray(p, jnp.float32), jnp.asarray(l))) for l in lights] for p in poses]
  grid = np.concatenate([np.concatenate(r, 1) for r in tiles], 0)
  Image.fromarray((np.clip(grid, 0, 1) * 255).astype(np.uint8)).save(path)
  print(f"saved {path} ({fm.name}, {len(poses)} poses x {len(lights)} lights)")


@cli
def main(argv=None):
  ap = cli_lib.parser("jaxface.bench.render", description=__doc__.split("\n")[0])
  ap.add_argument("--quick", action="store_true", help="batch 16 only, 3 iterations")
  ap.add_argument("--resolutions", type=int, nargs="+", default=[224, 256], help="render resolutions")
  ap.add_argument("--batches", type=int, nargs="+", default=[16, 64], help="renders per call")
  ap.add_argument("--modes", nargs="+", default=["fwd", "fwdbwd"], choices=["fwd", "fwdbwd"],
                  help="forward, or forward and backward")
  ap.add_argument("--iters", type=int, default=10, help="timed calls per configuration")
  ap.add_argument("--picture", default=None, help="also save the mean-face pose/light grid PNG here")
  ap.add_argument("--gl", action="store_true", help="also compare rasterization with Mesa's OpenGL (moderngl)")
  ap.add_argument("--skip-render", action="store_true", help="skip the full render matrix")
  args = ap.parse_args(argv)
  if args.quick:
    args.batches, args.iters = [16], 3
  print(f"device: {common.device_name()} x{jax.device_count()}")
  if args.picture:
    save_picture(args.picture)
  if not args.skip_render:
    run(args.resolutions, args.batches, args.modes, args.iters)
  if args.gl:
    compare_gl(args.resolutions, args.batches[0], args.iters)


if __name__ == "__main__":
  main()
