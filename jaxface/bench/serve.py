"""Editor latency: per-frame time of the slider endpoint at batch 1, in-process and over HTTP.

  python -m jaxface.bench.serve --workdir W [--frames 60] [--embed-steps 20] [--no-upload]

Each frame moves a slider (yaw, smile, light azimuth in turn, never repeating a state), as a drag does:
  in-process  Editor.frame: request parsing, λ edit, jitted mapping + synthesis, copy to host (no PNG)
  http        POST /api/render on one keep-alive connection, PNG decoded by the client: what the page waits for
for a seed identity and, unless --no-upload, for an uploaded photo (a synthetic-world render, embedded with
--embed-steps; its frames add the w+ edit Φ(λ') − Φ(λ) and per-sample noise maps). Prints a table and appends
one line per (identity, path) to bench/results.jsonl. The target: < 100 ms per frame on a GPU.
"""

import http.client
import io
import json
import os
import time

import numpy as np

from jaxface import cli as cli_lib
from jaxface import serve
from jaxface.cli import lazy_import
from jaxface.data import synthetic
from jaxface.errors import cli

# Imported on first use: `--help` and argument mistakes answer without loading JAX.
common = lazy_import("jaxface.bench.common")



def slider_states(n, identity, base=None):
  """n render requests, each one slider step away from the last (a drag over yaw, then smile, then light)."""
  base = dict(base or {})
  out = []
  for i in range(n):
    v = dict(base)
    t = (i % 20) / 19.0
    key = ("yaw", "smile_l", "light_azimuth")[(i // 20) % 3]
    v[key] = {"yaw": -40 + 80 * t, "smile_l": t, "light_azimuth": -80 + 160 * t}[key] + 1e-3 * i
    out.append({"identity": identity, "values": v})
  return out


def percentiles(ms):
  return {"median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)), "frames": len(ms)}


def in_process(editor, states, warmup=3):
  for s in states[:warmup]:
    editor.frame(s)
  ms = []
  for s in states:
    t0 = time.perf_counter()
    editor.frame(s)
    ms.append((time.perf_counter() - t0) * 1e3)
  return percentiles(ms)


def over_http(port, states, warmup=3):
  from PIL import Image
  conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
  ms, server_ms = [], []
  for i, s in enumerate(states[:warmup] + states):
    t0 = time.perf_counter()
    conn.request("POST", "/api/render", json.dumps(s), {"Content-Type": "application/json"})
    r = conn.getresponse()
    body = r.read()
    if r.status != 200:
      raise RuntimeError(f"render failed: {r.status} {body[:200]!r}")
    Image.open(io.BytesIO(body)).load()
    if i >= warmup:
      ms.append((time.perf_counter() - t0) * 1e3)
      server_ms.append(float(r.getheader("X-Server-Ms")))
  conn.close()
  return dict(percentiles(ms), server_median_ms=float(np.median(server_ms)))


def world_photo_png(resolution=128, index=12345):
  from PIL import Image

  buf = io.BytesIO()
  img = synthetic.to_uint8(synthetic.render_items([index], resolution, batch_size=1)["image"][0])
  Image.fromarray(img).save(buf, "PNG")
  return buf.getvalue()


def run(workdir, frames, embed_steps, upload):
  from jaxface.runs.disco_generator import Generator  # JAX: loaded once the command runs, not for --help
  from jaxface.web.editor import Editor  # JAX: loaded once the command runs, not for --help
  gen = Generator.load(workdir)
  editor = Editor(gen, embed_steps)
  t0 = time.perf_counter()
  editor.warm()
  warm_s = time.perf_counter() - t0
  server = serve.start_background(editor)
  identities = [("seed", {"seed": 7}, None)]
  embed_s = None
  if upload:
    t0 = time.perf_counter()
    emb = editor.upload(world_photo_png())
    embed_s = time.perf_counter() - t0
    identities.append(("upload", {"upload": emb["id"]}, emb["values"]))
  rows = []
  try:
    for kind, identity, base in identities:
      states = slider_states(frames, identity, base)
      for path, fn in (("in-process", lambda s: in_process(editor, s)),
                       ("http", lambda s: over_http(server.server_port, s))):
        figures = fn(states)
        config = {"workdir": os.path.basename(os.path.normpath(workdir)), "resolution": gen.resolution,
                  "identity": kind, "path": path, "batch": 1, "embed_steps": embed_steps if kind == "upload" else 0}
        extra = {"warm_s": warm_s, "embed_s": embed_s if kind == "upload" else None}
        row = common.record("serve", config, dict(figures, **extra))
        rows.append(dict(row, **config))
  finally:
    server.shutdown()
    server.server_close()
  common.print_table(rows, ["device", "resolution", "identity", "path", "frames", "median_ms", "p90_ms"])
  return rows


@cli
def main(argv=None):
  p = cli_lib.parser("jaxface.bench.serve", description=__doc__)
  p.add_argument("--workdir", required=True, help="a configs/disco.py training workdir")
  p.add_argument("--frames", type=int, default=60, help="timed frames per (identity, path)")
  p.add_argument("--embed-steps", type=int, default=20, help="optimizer steps for the uploaded photo")
  p.add_argument("--no-upload", action="store_true", help="time seed identities only")
  args = p.parse_args(argv)
  run(args.workdir, args.frames, args.embed_steps, not args.no_upload)


if __name__ == "__main__":
  main()
