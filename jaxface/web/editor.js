// The jaxface editor page: sliders -> POST /api/render -> PNG. One request in flight at a time; moves made
// while it runs are coalesced into one follow-up with the newest state (so the image never lags behind a queue
// of stale frames, and the last frame shown is always the last slider state).
"use strict";

const $ = (id) => document.getElementById(id);
const GROUPS = { pose: "Pose", expression: "Expression", light: "Light", truncation: "Truncation" };
const state = { identity: { seed: 0 }, values: {} };
let info = null, specs = {}, inputs = {}, outputs = {};
let inflight = false, pending = false, timer = null, frames = 0, objectUrl = null;
const latencies = [];
const photoValues = {};  // upload id -> the photo's own slider values (what "reset" returns to)

function showError(msg) {
  const box = $("error");
  box.textContent = msg;
  box.hidden = !msg;
}

async function errorOf(resp) {
  try { return (await resp.json()).error || `HTTP ${resp.status}`; } catch (e) { return `HTTP ${resp.status}`; }
}

function fmt(spec, v) { return spec.step >= 0.5 ? v.toFixed(spec.step >= 1 ? 0 : 1) : v.toFixed(2); }

function setValue(key, v) {
  const spec = specs[key], input = inputs[key];
  // Widen the slider to show a value outside its range (a photo's own strong expression or light).
  if (v < Number(input.min)) input.min = v;
  if (v > Number(input.max)) input.max = v;
  input.value = v;
  state.values[key] = v;
  outputs[key].textContent = fmt(spec, v);
}

function buildSliders() {
  const boxes = {};
  for (const spec of info.sliders) {
    specs[spec.key] = spec;
    if (!boxes[spec.group]) {
      const fs = document.createElement("fieldset");
      fs.id = `group-${spec.group}`;
      fs.innerHTML = `<legend>${GROUPS[spec.group] || spec.group}</legend>`;
      $("controls").appendChild(fs);
      boxes[spec.group] = fs;
    }
    const row = document.createElement("div");
    row.className = "row";
    const label = document.createElement("label");
    label.textContent = spec.label;
    label.htmlFor = `s-${spec.key}`;
    const input = document.createElement("input");
    Object.assign(input, { type: "range", id: `s-${spec.key}`, min: spec.min, max: spec.max, step: "any" });
    input.dataset.key = spec.key;
    input.dataset.step = spec.step;  // keyboard steps (the range itself is continuous)
    const out = document.createElement("output");
    row.append(label, input, out);
    boxes[spec.group].appendChild(row);
    inputs[spec.key] = input;
    outputs[spec.key] = out;
    input.addEventListener("input", () => { setValue(spec.key, Number(input.value)); schedule(); });
    input.addEventListener("keydown", (ev) => {  // step="any" has no keyboard step: give each slider its own
      const d = { ArrowRight: 1, ArrowUp: 1, ArrowLeft: -1, ArrowDown: -1, PageUp: 10, PageDown: -10 }[ev.key];
      const to = { Home: Number(input.min), End: Number(input.max) }[ev.key];
      if (d === undefined && to === undefined) return;
      ev.preventDefault();
      let v = to !== undefined ? to : Number(input.value) + d * spec.step;
      v = Math.min(Number(input.max), Math.max(Number(input.min), v));
      setValue(spec.key, v);
      schedule();
    });
    setValue(spec.key, spec.default);
  }
}

function resetSliders(values) {
  for (const key in specs) {
    inputs[key].min = specs[key].min;
    inputs[key].max = specs[key].max;
    setValue(key, values && key in values ? values[key] : specs[key].default);
  }
}

function schedule() {
  clearTimeout(timer);
  timer = setTimeout(send, 10);  // coalesce bursts of input events
}

async function send() {
  if (inflight) { pending = true; return; }
  inflight = true;
  pending = false;
  const t0 = performance.now();
  try {
    const resp = await fetch("/api/render", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(state),
    });
    if (!resp.ok) {
      showError(await errorOf(resp));
    } else {
      const blob = await resp.blob();
      const ms = performance.now() - t0;
      const url = URL.createObjectURL(blob);
      const img = $("view");
      img.onload = () => { if (objectUrl && objectUrl !== url) URL.revokeObjectURL(objectUrl); objectUrl = url; };
      img.src = url;
      frames += 1;
      img.dataset.frames = frames;
      latencies.push(ms);
      if (latencies.length > 30) latencies.shift();
      const median = [...latencies].sort((a, b) => a - b)[Math.floor(latencies.length / 2)];
      $("latency").textContent = `frame ${frames}: ${ms.toFixed(0)} ms round trip ` +
        `(generator ${resp.headers.get("X-Render-Ms")} ms, server ${resp.headers.get("X-Server-Ms")} ms); ` +
        `median ${median.toFixed(0)} ms over the last ${latencies.length}`;
      showError("");
    }
  } catch (e) {
    showError(`the server did not answer (${e}); is python -m jaxface.serve still running?`);
  } finally {
    inflight = false;
    if (pending) send();
  }
}

function selectIdentity(identity, label) {
  state.identity = identity;
  $("identity-label").textContent = `identity: ${label}`;
  document.body.dataset.identity = label;
  for (const el of document.querySelectorAll(".photo")) {
    el.classList.toggle("selected", identity.upload === el.dataset.id);
  }
  inputs.psi.disabled = "upload" in identity;  // w+ of a photo comes from the optimizer: no truncation
  inputs.psi.title = inputs.psi.disabled ? "ψ applies to seed identities only" : "";
  schedule();
}

function selectSeed() {
  const seed = Math.max(0, Math.min(2147483647, Math.floor(Number($("seed").value) || 0)));
  $("seed").value = seed;
  selectIdentity({ seed }, `seed ${seed}`);
}

async function upload(file) {
  showError("");
  if (file.size > info.max_upload_mb * 1048576) {
    showError(`the photo is ${(file.size / 1048576).toFixed(1)} MB; the server takes at most ${info.max_upload_mb} MB`);
    return;
  }
  $("upload").disabled = true;
  $("upload-status").textContent = `embedding ${file.name} (${info.embed_steps} optimizer steps)…`;
  const t0 = performance.now();
  try {
    const resp = await fetch("/api/upload", {
      // The server reads the format from the bytes, not the browser's guess from the file name.
      method: "POST", headers: { "Content-Type": "application/octet-stream" }, body: file,
    });
    if (!resp.ok) {
      const msg = await errorOf(resp);
      showError(`upload failed: ${msg}`);
      $("upload-status").textContent = "";
      return;
    }
    const emb = await resp.json();
    const card = document.createElement("div");
    card.className = "photo";
    card.dataset.id = emb.id;
    const a = new Image(), b = new Image();
    a.src = emb.target; a.alt = "aligned photo"; b.src = emb.recon; b.alt = "embedding"; b.className = "recon";
    card.append(a, b, document.createElement("br"), emb.label);
    card.title = `${emb.label}: aligned photo | its embedding`;
    photoValues[emb.id] = emb.values;
    card.addEventListener("click", () => { resetSliders(emb.values); selectIdentity({ upload: emb.id }, emb.label); });
    $("photos").appendChild(card);
    $("upload-status").textContent = `${file.name}: embedded in ${((performance.now() - t0) / 1000).toFixed(1)} s`;
    resetSliders(emb.values);  // the photo's own pose, expression and light: untouched sliders = the photo
    selectIdentity({ upload: emb.id }, emb.label);
  } catch (e) {
    showError(`upload failed: ${e}`);
    $("upload-status").textContent = "";
  } finally {
    $("upload").disabled = false;
    $("upload").value = "";
  }
}

async function start() {
  try {
    const resp = await fetch("/api/info");
    if (!resp.ok) throw new Error(await errorOf(resp));
    info = await resp.json();
  } catch (e) {
    showError(`cannot load the editor's settings: ${e}`);
    return;
  }
  $("model").textContent = `${info.resolution}² DiscoFaceGAN (${info.source} face model), checkpoint step ${info.step}`;
  buildSliders();
  $("seed").addEventListener("change", selectSeed);
  $("random").addEventListener("click", () => {
    $("seed").value = Math.floor(Math.random() * 100000);
    selectSeed();
  });
  $("reset").addEventListener("click", () => { resetSliders(photoValues[state.identity.upload]); schedule(); });
  $("upload").addEventListener("change", () => { if ($("upload").files.length) upload($("upload").files[0]); });
  document.body.dataset.ready = "1";
  selectSeed();
}

start();
