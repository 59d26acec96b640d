"""A local web page to edit faces with a trained DiscoFaceGAN: sliders for pose, expression, light and truncation.

  python -m jaxface.serve [--workdir W] [--host 127.0.0.1] [--port 8765] [--max-upload-mb 8] [--embed-steps 100]

then open http://127.0.0.1:8765/. Pick an identity (a seed, or upload a photo: it is aligned, R-Net estimates its
coefficients and its w+ is optimized, see jaxface/edit/embed.py), and move the sliders: the image follows
(the page debounces, keeps one request in flight and always sends the newest state, and shows per-frame latency).

Endpoints (the page's, and for scripts):
  GET  /                 the editor page (jaxface/web/editor.html + editor.js)
  GET  /api/info         sliders (key, group, range, default), resolution, checkpoint step
  POST /api/render       JSON {"identity": {"seed": 3} | {"upload": id}, "values": {"yaw": 20, ...}} -> image/png
                         (headers X-Render-Ms: generator time, X-Server-Ms: whole request)
  POST /api/upload       the photo's bytes (Content-Type image/*) -> JSON {id, label, values, recon, target}
Errors are JSON {"error": "..."} with a 4xx status the page shows: 400 bad request or corrupt/truncated image,
404 unknown upload id, 411 no Content-Length, 413 too large (bytes or pixels), 415 not PNG/JPEG/WebP/BMP,
422 no face found, 503 busy embedding; a bug is a 500 with a message, and the server keeps serving.

Safety: binds to 127.0.0.1 unless --host says otherwise (there is no authentication: do not expose it), checks
the Host header while on loopback (DNS rebinding), serves only its own two files, never opens a path a request
names (uploads live in memory under ids the server makes), and reads no body larger than --max-upload-mb.
"""

import argparse
import importlib.resources
import ipaddress
import json
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from jaxface.errors import UserError, cli

MAX_JSON = 64 * 1024  # a render request is ~1 KB
DRAIN_LIMIT = 64 * 1024 * 1024  # an over-limit body up to this size is read and dropped, so the 413 arrives
FILES = {"/": ("editor.html", "text/html; charset=utf-8"), "/index.html": ("editor.html", "text/html; charset=utf-8"),
         "/editor.js": ("editor.js", "text/javascript; charset=utf-8")}
CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self' 'unsafe-inline'; connect-src 'self'; "
       "frame-ancestors 'none'")
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "[::1]", "::1"}


class HTTPError(Exception):
  def __init__(self, status, message, drained=True):
    super().__init__(message)
    self.status, self.drained = status, drained


class Handler(BaseHTTPRequestHandler):
  protocol_version = "HTTP/1.1"  # keep-alive: a slider drag is many small requests on one connection
  disable_nagle_algorithm = True  # headers and body are two writes: Nagle + delayed ACK would add ~40 ms a frame
  server_version = "jaxface-serve"
  timeout = 60  # seconds a stalled client may hold its thread

  # ------------------------------------------------------------------------------------------ dispatch

  def do_GET(self):
    self._guard(self._get)

  def do_POST(self):
    self._guard(self._post)

  def _guard(self, fn):
    """Every failure becomes a JSON error response; nothing a request does stops the server."""
    from jaxface.web.editor import RequestError  # JAX: loaded once the command runs, not for --help
    try:
      self._check_host()
      fn()
    except HTTPError as e:
      if not e.drained:
        self.close_connection = True  # the unread body would be parsed as the next request
      self._json(e.status, {"error": str(e)})
    except RequestError as e:
      self._json(e.status, {"error": str(e)})
    except UserError as e:
      from jaxface.edit import embed  # JAX: loaded once the command runs, not for --help
      self._json(422 if isinstance(e, embed.NoFaceError) else 400, {"error": str(e)})
    except (BrokenPipeError, ConnectionResetError):
      self.close_connection = True
    except Exception as e:  # a bug: report it, keep serving
      traceback.print_exc()
      self._json(500, {"error": f"internal error ({type(e).__name__}: {e}); the server is still running"})

  def _check_host(self):
    if not self.server.loopback:
      return
    host = hostname(self.headers.get("Host") or "")
    if host not in LOOPBACK_NAMES:
      raise HTTPError(403, f"Host {host!r} is not this machine; open the editor at http://127.0.0.1:<port>/",
                      drained=False)

  def _get(self):
    path = self.path.split("?", 1)[0]
    if path in FILES:
      name, ctype = FILES[path]
      return self._send(200, self.server.files[name], ctype)
    if path == "/favicon.ico":
      return self._send(204, b"", "image/x-icon")
    if path == "/api/info":
      return self._json(200, dict(self.server.editor.info(), max_upload_mb=self.server.max_upload / 2 ** 20))
    raise HTTPError(404, f"no page {path[:80]!r}; the editor is at /")

  def _post(self):
    path = self.path.split("?", 1)[0]
    if path == "/api/render":
      return self._render()
    if path == "/api/upload":
      return self._upload()
    self._body(MAX_JSON, "request")  # consume it so the connection stays usable
    raise HTTPError(404, f"no endpoint {path[:80]!r}; POST /api/render or /api/upload")

  # ------------------------------------------------------------------------------------------ endpoints

  def _render(self):
    t0 = time.perf_counter()
    body = self._body(MAX_JSON, "render request")
    if self._ctype() != "application/json":
      raise HTTPError(415, "send the render request as Content-Type: application/json")
    try:
      request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
      raise HTTPError(400, f"the render request is not valid JSON ({e})") from None
    image, ms = self.server.editor.frame(request)
    from jaxface.web.editor import png_bytes  # JAX: loaded once the command runs, not for --help
    png = png_bytes(image)
    self._send(200, png, "image/png", {"X-Render-Ms": f"{ms:.2f}",
                                       "X-Server-Ms": f"{(time.perf_counter() - t0) * 1e3:.2f}"})

  def _upload(self):
    limit = self.server.max_upload
    body = self._body(limit, "photo")
    ctype = self._ctype()
    if not (ctype.startswith("image/") or ctype == "application/octet-stream"):
      raise HTTPError(415, f"send the photo's bytes as Content-Type image/..., not {ctype[:60]!r}")
    if not body:
      raise HTTPError(400, "the upload is empty; choose a photo file")
    self._json(200, self.server.editor.upload(body))

  # ------------------------------------------------------------------------------------------ plumbing

  def _ctype(self):
    return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

  def _body(self, limit, what):
    """The request body, at most `limit` bytes (413 past it, read and dropped when not absurdly large)."""
    if self.headers.get("Transfer-Encoding"):
      raise HTTPError(411, "chunked bodies are not accepted; send a Content-Length", drained=False)
    raw = self.headers.get("Content-Length")
    if raw is None:
      raise HTTPError(411, f"the {what} needs a Content-Length header", drained=False)
    try:
      n = int(raw)
      if n < 0:
        raise ValueError
    except ValueError:
      raise HTTPError(400, f"bad Content-Length {raw[:40]!r}", drained=False) from None
    if n > limit:
      drained = n <= DRAIN_LIMIT
      while drained and n > 0:
        chunk = self.rfile.read(min(n, 1 << 20))
        drained, n = bool(chunk), n - len(chunk)
      raise HTTPError(413, f"the {what} is {int(raw) / 2 ** 20:.1f} MB; the limit is {limit / 2 ** 20:.1f} MB "
                      "(--max-upload-mb)", drained=drained)
    body = self.rfile.read(n)
    if len(body) != n:
      raise HTTPError(400, f"the {what} ended after {len(body)} of {n} bytes", drained=False)
    return body

  def _json(self, status, obj):
    self._send(status, json.dumps(obj).encode(), "application/json")

  def _send(self, status, body, ctype, headers=None):
    self.send_response(status)
    self.send_header("Content-Type", ctype)
    self.send_header("Content-Length", str(len(body)))
    self.send_header("Cache-Control", "no-store")
    self.send_header("X-Content-Type-Options", "nosniff")
    self.send_header("Content-Security-Policy", CSP)
    for k, v in (headers or {}).items():
      self.send_header(k, v)
    if self.close_connection:
      self.send_header("Connection", "close")
    self.end_headers()
    self.wfile.write(body)

  def log_message(self, fmt, *args):
    if not self.server.quiet:
      sys.stderr.write(f"[serve] {self.address_string()} {fmt % args}\n")


def hostname(host_header):
  """The name part of a Host header: "127.0.0.1:8765" -> "127.0.0.1", "[::1]:80" -> "[::1]"."""
  if host_header.startswith("["):
    return host_header.split("]", 1)[0] + "]"
  return host_header.split(":", 1)[0].lower()


def is_loopback(host):
  try:
    return ipaddress.ip_address(host).is_loopback
  except ValueError:
    return host == "localhost"


class Server(ThreadingHTTPServer):
  """The standard library's threading server with room for a burst of connections: its listen backlog is 5, and
  the kernel resets connections that arrive while the backlog is full (7 of 32 simultaneous renders were reset).
  The kernel caps the backlog at net.core.somaxconn (4096 on current Linux)."""

  request_queue_size = 1024
  daemon_threads = True


def make_server(editor, host="127.0.0.1", port=0, max_upload_mb=8.0, quiet=False):
  """A `Server` serving `editor` (call .serve_forever(); port 0 picks a free one: .server_port)."""
  server = Server((host, port), Handler)
  server.editor, server.quiet, server.loopback = editor, quiet, is_loopback(host)
  server.max_upload = int(max_upload_mb * 2 ** 20)
  web = importlib.resources.files("jaxface.web")
  server.files = {name: web.joinpath(name).read_bytes() for name, _ in FILES.values()}
  return server


def start_background(editor, host="127.0.0.1", port=0, max_upload_mb=8.0, quiet=True):
  """`make_server` serving from a daemon thread (tests, benchmarks); stop it with .shutdown()."""
  server = make_server(editor, host, port, max_upload_mb, quiet)
  threading.Thread(target=server.serve_forever, name="jaxface-serve", daemon=True).start()
  return server


def parse_args(argv):
  p = argparse.ArgumentParser(prog="python -m jaxface.serve", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--workdir", default=None,
                 help="a configs/disco.py training workdir or an exported folder (default: the bundled reference "
                      "generator, pretrained/disco_cpu64)")
  p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
  p.add_argument("--port", type=int, default=8765, help="port (0: any free one)")
  p.add_argument("--max-upload-mb", type=float, default=8.0, help="largest photo upload accepted")
  p.add_argument("--max-megapixels", type=float, default=40.0, help="largest decoded photo accepted")
  p.add_argument("--embed-steps", type=int, default=100, help="optimizer steps per uploaded photo")
  p.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")
  return p.parse_args(argv)


@cli
def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  if args.embed_steps < 1 or args.max_upload_mb <= 0 or args.max_megapixels <= 0:
    raise UserError("--embed-steps must be >= 1 and --max-upload-mb, --max-megapixels > 0")
  from jaxface.runs.disco_generator import Generator  # JAX: loaded once the command runs, not for --help
  from jaxface.web.editor import Editor  # JAX: loaded once the command runs, not for --help
  from jaxface import parallel  # JAX: loaded once the command runs, not for --help
  parallel.enable_compilation_cache()  # the editor's warm-up compiles once per machine, not per launch
  gen = Generator.load(args.workdir, args.step)
  editor = Editor(gen, args.embed_steps, max_pixels=int(args.max_megapixels * 1e6))
  t0 = time.perf_counter()
  editor.warm()
  print(f"compiled and warmed the {gen.resolution}² generator (step {gen.step}) in {time.perf_counter() - t0:.1f} s",
        flush=True)
  try:
    server = make_server(editor, args.host, args.port, args.max_upload_mb)
  except OSError as e:
    raise UserError(f"cannot listen on {args.host}:{args.port} ({e}); pick another --port") from None
  if not server.loopback:
    print(f"warning: listening on {args.host}: anyone who can reach it can use the editor (no authentication)",
          file=sys.stderr)
  print(f"jaxface editor at http://{args.host}:{server.server_port}/ (Ctrl-C stops it)", flush=True)
  try:
    server.serve_forever()
  except KeyboardInterrupt:
    pass
  finally:
    server.server_close()
  return 0


if __name__ == "__main__":
  sys.exit(main())
