"""The editor server (python -m jaxface.serve) over HTTP, on the session's tiny DiscoFaceGAN: frames follow the
sliders and match the generator; every bad input is a 4xx JSON message and the server keeps serving."""

import base64
import http.client
import io
import json
import math
import os

import numpy as np
import pytest
from PIL import Image

MAX_PIXELS = 200_000  # small limits, so the size checks are cheap to hit
MAX_UPLOAD_MB = 0.5


_SHARED = {}


def shared_server(tiny_disco):
  """One Generator, Editor and server for this file and test_serve_browser.py: loading and compiling the generator
  is most of their time. The server thread is a daemon: it ends with the test process."""
  if not _SHARED:
    from jaxface import serve
    from jaxface.runs.disco_generator import Generator
    from jaxface.web.editor import Editor
    os.environ["JAXFACE_CACHE"] = tiny_disco["env"]["JAXFACE_CACHE"]
    editor = Editor(Generator.load(str(tiny_disco["workdir"])), embed_steps=3, max_pixels=MAX_PIXELS)
    editor.warm()
    _SHARED.update(editor=editor, server=serve.start_background(editor, "127.0.0.1", 0, MAX_UPLOAD_MB))
  return _SHARED["editor"], _SHARED["server"]


@pytest.fixture
def editor(tiny_disco):
  return shared_server(tiny_disco)[0]


@pytest.fixture
def port(tiny_disco):
  return shared_server(tiny_disco)[1].server_port


def call(port, method, path, body=None, headers=None, length=True):
  """(status, headers, body) of one request on a fresh connection. length=False: no Content-Length header."""
  c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
  if length:
    c.request(method, path, body=body, headers=headers or {})
  else:
    c.putrequest(method, path)
    for k, v in (headers or {}).items():
      c.putheader(k, v)
    c.endheaders()
  r = c.getresponse()
  out = r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
  c.close()
  return out


def render(port, identity=None, **values):
  body = json.dumps({"identity": identity or {"seed": 0}, "values": values})
  return call(port, "POST", "/api/render", body, {"Content-Type": "application/json"})


def frame(port, identity=None, **values):
  status, headers, body = render(port, identity, **values)
  assert status == 200, body
  assert headers["content-type"] == "image/png" and float(headers["x-render-ms"]) > 0
  return np.asarray(Image.open(io.BytesIO(body)))


def png(array, fmt="PNG"):
  buf = io.BytesIO()
  Image.fromarray(array).save(buf, fmt)
  return buf.getvalue()


def world_photo(index=12345, resolution=128):
  """A synthetic-world render: a photo with a face the detector finds, at a size the editor must align."""
  from jaxface.data import synthetic
  return synthetic.to_uint8(synthetic.render_items([index], resolution, batch_size=1)["image"][0])


def assert_error(response, status, *phrases):
  got, headers, body = response
  assert got == status, (got, body[:300])
  assert headers["content-type"] == "application/json"
  msg = json.loads(body)["error"]
  for p in phrases:
    assert p in msg, (p, msg)
  return msg


def assert_serving(port):
  assert frame(port, yaw=5.0).shape[-1] == 3


# ------------------------------------------------------------------------------------------------- frames

def test_frames_follow_the_sliders_and_match_the_generator(editor, port):
  from jaxface.runs.disco_generator import to_uint8
  gen = editor.gen
  status, headers, page = call(port, "GET", "/")
  assert status == 200 and b'<script src="/editor.js">' in page and headers["content-type"].startswith("text/html")
  status, headers, script = call(port, "GET", "/editor.js")
  assert status == 200 and b"/api/render" in script
  info = json.loads(call(port, "GET", "/api/info")[2])
  assert {s["key"] for s in info["sliders"]} >= {"yaw", "pitch", "roll", "smile_l", "light_azimuth", "psi"}

  base = frame(port, {"seed": 5})
  assert base.shape == (gen.resolution, gen.resolution, 3)
  np.testing.assert_array_equal(frame(port, {"seed": 5}), base)  # deterministic
  for key, value in (("yaw", 40.0), ("smile_l", 1.0), ("light_azimuth", 80.0), ("psi", 0.0)):
    moved = frame(port, {"seed": 5}, **{key: value})
    assert np.abs(moved.astype(int) - base).mean() > 0.5, key
  assert np.abs(frame(port, {"seed": 6}).astype(int) - base).mean() > 0.5

  # Reference: the same λ built by hand from the documented slider meanings -> Generator.generate.
  v = dict(yaw=30.0, pitch=-10.0, roll=5.0, smile_l=0.7, light_azimuth=40.0, light_elevation=20.0,
           light_intensity=0.4, light_ambient=1.1, psi=0.5)
  blocks = gen.lambdas(1, 5, identity=5)
  blocks["angle"][0] = np.deg2rad([v["pitch"], v["yaw"], v["roll"]])
  blocks["exp"][:] = 0.0
  blocks["exp"][0, list(editor.exp_names).index("smile_l")] = v["smile_l"]
  az, el, s = math.radians(v["light_azimuth"]), math.radians(v["light_elevation"]), v["light_intensity"]
  d = np.array([math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el)])
  gamma = np.zeros((3, 9))
  gamma[:, 0] = v["light_ambient"] - 0.8
  gamma[:, 1:4] = s * np.array([-d[1], d[2], -d[0]])
  blocks["gamma"] = gamma.reshape(1, 27).astype(np.float32)
  want = to_uint8(gen.generate(blocks, noise=5, psi=v["psi"]))[0]
  got = frame(port, {"seed": 5}, **v)
  assert np.abs(got.astype(int) - want).max() <= 1


def test_light_sliders_point_the_shader_light_where_they_say():
  import jax.numpy as jnp
  from jaxface.render import lighting
  from jaxface.web import editor as E
  rng = np.random.default_rng(0)
  normals = rng.normal(size=(20000, 3))
  normals /= np.linalg.norm(normals, axis=1, keepdims=True)
  base = rng.normal(0, 0.05, 27).astype(np.float32)  # a photo's light: tinted, with higher bands
  for az, el in ((0.0, 0.0), (60.0, 10.0), (-45.0, -30.0), (120.0, 45.0)):
    values = {"light_azimuth": az, "light_elevation": el, "light_intensity": 0.5, "light_ambient": 1.0}
    gamma = E.relight(np.zeros(27), values)
    irr = np.asarray(lighting.irradiance(jnp.asarray(normals, jnp.float32), jnp.asarray(gamma)))[:, 0]
    a, e = math.radians(az), math.radians(el)
    want = np.array([math.sin(a) * math.cos(e), math.sin(e), math.cos(a) * math.cos(e)])
    assert normals[np.argmax(irr)] @ want > 0.99, (az, el)  # the brightest normal faces the light
    back = E.light_values(gamma)
    assert abs(back["light_azimuth"] - az) < 1e-3 and abs(back["light_elevation"] - el) < 1e-3
    # Relighting keeps a photo's tint and higher bands; its own slider values give its γ back.
    g = E.relight(base, values).reshape(3, 9) - base.reshape(3, 9)
    np.testing.assert_allclose(g[:, 4:], 0, atol=1e-7)
    np.testing.assert_allclose(g[:, :4] - g[:1, :4], 0, atol=1e-6)
    np.testing.assert_allclose(E.relight(base, E.light_values(base)), base, atol=1e-6)


def test_upload_is_embedded_and_edited(editor, port):
  status, _, body = call(port, "POST", "/api/upload", png(world_photo()), {"Content-Type": "image/png"})
  assert status == 200, body
  emb = json.loads(body)
  assert emb["id"].startswith("u") and emb["label"].startswith("photo ")
  recon = np.asarray(Image.open(io.BytesIO(base64.b64decode(emb["recon"].split(",", 1)[1]))))
  ident = {"upload": emb["id"]}
  own = frame(port, ident, **emb["values"])  # the photo's own slider values reproduce its embedding
  assert np.abs(own.astype(int) - recon).max() <= 2
  moved = frame(port, ident, **dict(emb["values"], yaw=emb["values"]["yaw"] + 30.0))
  assert np.abs(moved.astype(int) - own).mean() > 0.5


# ------------------------------------------------------------------------------------------------- bad input

def test_bad_requests_are_4xx_messages_and_the_server_keeps_serving(port):
  json_ct = {"Content-Type": "application/json"}
  cases = [
      (call(port, "POST", "/api/render", b"{yaw", json_ct), 400, "not valid JSON"),
      (call(port, "POST", "/api/render", b"{}", {"Content-Type": "text/plain"}), 415, "application/json"),
      (render(port, colour=1.0), 400, "unknown slider", "yaw"),
      (render(port, yaw=1000.0), 400, "outside"),
      (render(port, yaw="left"), 400, "finite number"),
      (call(port, "POST", "/api/render", b'{"values": {"yaw": NaN}}', json_ct), 400, "finite number"),
      (render(port, {"seed": -1}), 400, "seed"),
      (render(port, {"seed": 1.5}), 400, "seed"),
      (call(port, "POST", "/api/render", b"[1, 2]", json_ct), 400, "JSON object"),
      (call(port, "POST", "/api/render", b"x" * 70_000, json_ct), 413, "limit"),
      (call(port, "POST", "/api/render", None, json_ct, length=False), 411, "Content-Length"),
      (call(port, "GET", "/api/nothing"), 404, "no page"),
      (call(port, "POST", "/api/nothing", b"{}", json_ct), 404, "no endpoint"),
      (call(port, "GET", "/api/info", headers={"Host": "attacker.example:80"}), 403, "not this machine"),
  ]
  for response, status, *phrases in cases:
    assert_error(response, status, *phrases)
    assert_serving(port)


def test_path_like_identities_are_rejected(port):
  for ident in ({"upload": "../../etc/passwd"}, {"upload": "/etc/passwd"}, {"upload": "u000000000000/../x"},
                {"upload": "..\\..\\boot.ini"}, {"seed": "../x"}, {"path": "/etc/passwd"}, "/etc/passwd"):
    msg = assert_error(render(port, ident), 400)
    assert "upload id" in msg or "identity" in msg or "seed" in msg, msg
  assert_error(render(port, {"upload": "u0123456789ab"}), 404, "upload the photo again")  # well-formed, unknown
  for path in ("/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/editor.html/../../etc/passwd"):
    status, _, body = call(port, "GET", path)
    assert status == 404 and b"root:" not in body
  assert_serving(port)


def test_bad_uploads_are_4xx_messages_and_the_server_keeps_serving(port):
  img = png(np.full((64, 64, 3), 128, np.uint8))
  gif = io.BytesIO()
  Image.new("RGB", (32, 32)).save(gif, "GIF")
  bomb = io.BytesIO()
  Image.new("1", (14000, 14000)).save(bomb, "PNG")  # 196 MP of zeros in a few kB: PIL's own bomb check
  up = lambda body, ctype="image/png": call(port, "POST", "/api/upload", body, {"Content-Type": ctype})  # noqa
  cases = [
      (up(b"\0" * int(0.6 * 2 ** 20)), 413, "limit is 0.5 MB"),
      (up(png(np.zeros((500, 500, 3), np.uint8))), 413, "more than the 200,000 allowed"),
      (up(bomb.getvalue()), 413, "too large"),
      (up(img[: len(img) // 2]), 400, "truncated"),
      (up(gif.getvalue(), "image/gif"), 415, "not a PNG"),
      (up(b"hello, not an image"), 415, "not a PNG"),
      (up(img, "text/plain"), 415, "Content-Type"),
      (up(b""), 400, "empty"),
      (up(png(np.zeros((8, 8, 3), np.uint8))), 400, "16x16"),
      (up(img), 422, "no face"),
      (call(port, "POST", "/api/upload", None, {"Content-Type": "image/png"}, length=False), 411, "Content-Length"),
  ]
  for response, status, *phrases in cases:
    assert_error(response, status, *phrases)
    assert_serving(port)


def test_a_server_bug_is_a_500_message_not_a_dead_server(editor, port, monkeypatch):
  def broken(request):
    raise RuntimeError("simulated bug")
  monkeypatch.setattr(editor, "frame", broken)
  assert_error(render(port), 500, "RuntimeError", "simulated bug", "still running")
  monkeypatch.undo()
  assert_serving(port)


# ------------------------------------------------------------------------------------------------- load

class _SlowEditor:
  """Stands in for the editor: each frame takes 50 ms, so connections pile up while the server is busy."""

  def frame(self, request):
    import time
    time.sleep(0.05)
    return np.zeros((8, 8, 3), np.uint8), 50.0


def test_a_burst_of_64_renders_is_served_without_a_reset():
  """64 clients connect at the same instant (tabs restored at once, a script): the standard library server's
  listen backlog of 5 made the kernel reset most of them; every one must get its frame."""
  import threading
  from jaxface import serve
  server = serve.start_background(_SlowEditor(), "127.0.0.1", 0)
  n = 64
  barrier, statuses = threading.Barrier(n), [None] * n

  def client(i):
    barrier.wait()
    try:
      statuses[i] = render(server.server_port)[0]
    except OSError as e:  # a reset connection
      statuses[i] = f"{type(e).__name__}: {e}"

  threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
  try:
    for t in threads:
      t.start()
    for t in threads:
      t.join(120)
  finally:
    server.shutdown()
    server.server_close()
  assert statuses == [200] * n, [s for s in statuses if s != 200][:5]
