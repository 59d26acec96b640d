"""The editor page in a real headless browser (Debian's chromium driven by Selenium through chromedriver): load
the page, move a slider and see the image change, upload a bad file and see the server's message, upload a
photo and see its embedding appear and drive the image. Fails, never skips, when the browser is missing."""

import os
import shutil
import tempfile
import time

import numpy as np
import pytest
from PIL import Image

CHROMIUM = ("/usr/bin/chromium", "chromium", "chromium-browser")
CHROMEDRIVER = ("/usr/bin/chromedriver", "chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1100,900")


def _which(names):
  for n in names:
    path = n if os.path.isabs(n) and os.access(n, os.X_OK) else shutil.which(n)
    if path:
      return path
  pytest.fail(f"{names[0]} not found: the browser test needs Debian's chromium and chromium-driver "
              "(apt-get install -y chromium chromium-driver; .ci/run installs them)")


@pytest.fixture
def url(tiny_disco):
  import test_serve  # tests/edit is on sys.path (pytest's prepend import mode): share its server
  return f"http://127.0.0.1:{test_serve.shared_server(tiny_disco)[1].server_port}/"


@pytest.fixture(scope="module")
def browser():
  from selenium import webdriver
  from selenium.webdriver.chrome.service import Service
  options = webdriver.ChromeOptions()
  options.binary_location = _which(CHROMIUM)
  for f in FLAGS:
    options.add_argument(f)
  profile = tempfile.mkdtemp(prefix="jaxface-chromium-")
  options.add_argument(f"--user-data-dir={profile}")
  driver = webdriver.Chrome(service=Service(_which(CHROMEDRIVER)), options=options)
  driver.set_script_timeout(30)
  yield driver
  driver.quit()
  shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver, condition, what, *args, timeout=120):
  """The first truthy value of the script `condition` (polled), or an AssertionError naming `what`."""
  end = time.time() + timeout
  while time.time() < end:
    value = driver.execute_script(condition, *args)
    if value:
      return value
    time.sleep(0.1)
  shown = driver.execute_script("return document.getElementById('error').textContent")
  raise AssertionError(f"timed out after {timeout} s waiting for {what}; the page's error box: {shown!r}")


# The displayed frame's pixels, once the <img> has finished loading frame number >= arguments[0].
PIXELS = """
const img = document.getElementById('view');
if (Number(img.dataset.frames) < arguments[0] || !img.complete || !img.naturalWidth) return null;
const c = document.createElement('canvas');
c.width = img.naturalWidth; c.height = img.naturalHeight;
const ctx = c.getContext('2d');
ctx.drawImage(img, 0, 0);
return Array.from(ctx.getImageData(0, 0, c.width, c.height).data);
"""


def frame_count(driver):
  return int(driver.execute_script("return Number(document.getElementById('view').dataset.frames)"))


def pixels_after(driver, count, what):
  """The image once a frame newer than `count` is shown (waits for the page's in-flight request to land)."""
  wait_for(driver, "return Number(document.getElementById('view').dataset.frames) > arguments[0]", what, count)
  time.sleep(0.2)  # the page coalesces moves into one follow-up request: let it start, then finish
  wait_for(driver, "return !inflight && !pending", what)
  return np.array(wait_for(driver, PIXELS, what, frame_count(driver)), np.int32)


def test_editor_page_in_a_real_browser(url, browser, tmp_path):
  from selenium.webdriver.common.by import By
  from selenium.webdriver.common.keys import Keys
  from jaxface.data import synthetic
  d = browser
  d.get(url)
  wait_for(d, "return document.body.dataset.ready === '1'", "the page to load its settings")
  first = pixels_after(d, 0, "the first frame")
  assert first.reshape(-1, 4)[:, 3].min() == 255 and first.reshape(-1, 4)[:, :3].std() > 1.0  # a real picture
  assert "ms round trip" in d.find_element(By.ID, "latency").text

  # Move a slider (keyboard, as a user would): the image changes.
  n = frame_count(d)
  d.find_element(By.ID, "s-yaw").send_keys(Keys.END)
  assert d.find_element(By.CSS_SELECTOR, "#s-yaw + output").text == "50.0"
  turned = pixels_after(d, n, "a frame after moving the yaw slider")
  assert np.abs(turned - first).mean() > 0.5

  # A file that is not an image: the server's message shows in the page.
  bad = tmp_path / "notes.txt"
  bad.write_text("not a photo")
  d.find_element(By.ID, "upload").send_keys(str(bad))
  msg = wait_for(d, "const e = document.getElementById('error'); return !e.hidden && e.textContent",
                 "the upload error message")
  assert "upload failed" in msg and "not a PNG" in msg

  # A photo (a synthetic-world render): it is embedded, its card appears, and it drives the image.
  photo = tmp_path / "face.png"
  Image.fromarray(synthetic.to_uint8(synthetic.render_items([12345], 128, batch_size=1)["image"][0])).save(photo)
  n = frame_count(d)
  d.find_element(By.ID, "upload").send_keys(str(photo))
  label = wait_for(d, "const c = document.querySelector('.photo.selected'); return c && c.textContent.trim()",
                   "the photo's embedding", timeout=300)
  assert label.startswith("photo ") and d.find_element(By.ID, "identity-label").text == f"identity: {label}"
  recon_width = wait_for(d, "const r = document.querySelector('.photo.selected img.recon'); "
                         "return r && r.complete && r.naturalWidth", "the embedding's picture")
  assert recon_width == int(d.execute_script("return info.resolution"))
  assert d.find_element(By.ID, "s-psi").get_attribute("disabled") is not None  # ψ is for seed identities
  embedded = pixels_after(d, n, "a frame of the embedded photo")
  assert np.abs(embedded - turned).mean() > 0.5
  assert d.find_element(By.ID, "error").get_attribute("hidden") is not None
  n = frame_count(d)
  d.find_element(By.ID, "s-smile_l").send_keys(Keys.END)
  smiling = pixels_after(d, n, "a frame after moving an expression slider on the photo")
  assert np.abs(smiling - embedded).mean() > 0.1
