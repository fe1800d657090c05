// The brushwork page: pick or drop an image, stylise it on the server, blend with the slider.
//
// The slider blends here, not on the server: the page fetches the full-strength result once
// (PNG, lossless) and mixes it with the input on a canvas for every slider position, with the
// server's formula (input + s * (styled - input) in float64, rounded half to even by the
// Uint8ClampedArray), so the picture and the download equal what POST /v1/stylize returns for
// that strength, and moving the slider costs no request. No build step, no libraries.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const ui = {
    model: $("model"), modelInfo: $("model-info"), strength: $("strength"), strengthValue: $("strength-value"),
    download: $("download"), drop: $("drop"), file: $("file"), status: $("status"),
    input: $("input"), output: $("output"),
  };
  const state = { file: null, source: null, styled: null, limits: null, descriptions: {}, ticket: 0, frame: 0 };

  function setStatus(text, kind = "") {
    ui.status.textContent = text;
    ui.status.dataset.kind = kind;
  }

  function enableDownload(on) {
    ui.download.disabled = !on;
  }

  // The file is made from the canvas when the button is pressed, so it is always what is shown.
  function download() {
    if (!state.styled) return;
    const name = `stylized-${ui.model.value}-${Number(ui.strength.value).toFixed(2)}.png`;
    ui.output.toBlob((blob) => {
      if (!blob) return setStatus("This browser could not encode the picture.", "error");
      const link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = name;
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
    }, "image/png");
  }

  async function loadModels() {
    const response = await fetch("v1/models");
    if (!response.ok) throw new Error(`cannot list the models (HTTP ${response.status})`);
    const info = await response.json();
    for (const m of info.models) {
      ui.model.add(new Option(m.name, m.name, m.default, m.default));
      state.descriptions[m.name] = m.description;
    }
    state.limits = info.limits;
    ui.model.disabled = false;
    showModel();
  }

  function showModel() {
    ui.modelInfo.textContent = state.descriptions[ui.model.value] || "";
  }

  // Pixels of an image blob as ImageData, EXIF orientation applied (as the server applies it).
  async function pixels(blob) {
    const bitmap = await createImageBitmap(blob, { imageOrientation: "from-image" });
    try {
      const canvas = document.createElement("canvas");
      canvas.width = bitmap.width;
      canvas.height = bitmap.height;
      const ctx = canvas.getContext("2d", { willReadFrequently: true });
      ctx.drawImage(bitmap, 0, 0);
      return ctx.getImageData(0, 0, bitmap.width, bitmap.height);
    } finally {
      bitmap.close();
    }
  }

  async function request(file, strength) {
    const form = new FormData();
    form.append("image", file);
    form.append("model", ui.model.value);
    form.append("strength", String(strength));
    form.append("format", "png");
    const response = await fetch("v1/stylize", { method: "POST", body: form });
    if (!response.ok) {
      let detail = response.statusText;
      try {
        detail = (await response.json()).detail || detail;
      } catch (_) {
        // not JSON: keep the status text
      }
      const wait = response.headers.get("Retry-After");
      throw new Error(`${detail}${wait ? ` (try again in ${wait} s)` : ""}`);
    }
    return response.blob();
  }

  function paint(canvas, image) {
    canvas.width = image.width;
    canvas.height = image.height;
    canvas.getContext("2d").putImageData(image, 0, 0);
  }

  function blend() {
    state.frame = 0;
    const s = Number(ui.strength.value);
    ui.strengthValue.textContent = s.toFixed(2);
    const { source, styled } = state;
    if (!source || !styled) return;
    const out = new ImageData(styled.width, styled.height);
    const a = source.data, b = styled.data, o = out.data;
    for (let i = 0; i < o.length; i += 4) {
      o[i] = a[i] + s * (b[i] - a[i]);
      o[i + 1] = a[i + 1] + s * (b[i + 1] - a[i + 1]);
      o[i + 2] = a[i + 2] + s * (b[i + 2] - a[i + 2]);
      o[i + 3] = a[i + 3];
    }
    paint(ui.output, out);
  }

  async function run() {
    const file = state.file;
    if (!file) return;
    const ticket = ++state.ticket;
    state.styled = null;
    enableDownload(false);
    if (state.limits && file.size > state.limits.max_upload_bytes) {
      const mb = (state.limits.max_upload_bytes / 1e6).toFixed(0);
      return setStatus(`This image is ${(file.size / 1e6).toFixed(1)} MB; the server takes up to ${mb} MB.`, "error");
    }
    document.body.classList.add("busy");
    setStatus(`Stylising with ${ui.model.value}…`, "busy");
    const started = performance.now();
    try {
      let source = null;
      try {
        source = await pixels(file);
      } catch (_) {
        source = null; // a format this browser cannot show (TIFF, say): the server decodes it below
      }
      if (source && ticket === state.ticket) paint(ui.input, source);
      const styled = await pixels(await request(file, 1));
      if (!source || source.width !== styled.width || source.height !== styled.height) {
        source = await pixels(await request(file, 0)); // strength 0: the server's decoding of the upload
        if (ticket === state.ticket) paint(ui.input, source);
      }
      if (ticket !== state.ticket) return; // a newer image or model took over
      state.source = source;
      state.styled = styled;
      blend();
      enableDownload(true);
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      setStatus(`${styled.width}×${styled.height}, ${ui.model.value}, ${seconds} s. Move the slider to blend with the input.`, "done");
    } catch (err) {
      if (ticket === state.ticket) setStatus(err.message || String(err), "error");
    } finally {
      if (ticket === state.ticket) document.body.classList.remove("busy");
    }
  }

  function choose(file) {
    if (!file) return;
    state.file = file;
    state.source = null;
    run();
  }

  ui.file.addEventListener("change", () => choose(ui.file.files[0]));
  ui.model.addEventListener("change", () => {
    showModel();
    run();
  });
  ui.strength.addEventListener("input", () => {
    if (!state.frame) state.frame = requestAnimationFrame(blend);
  });
  ui.strength.addEventListener("change", blend);
  ui.download.addEventListener("click", download);
  for (const name of ["dragenter", "dragover"]) {
    ui.drop.addEventListener(name, (event) => {
      event.preventDefault();
      ui.drop.classList.add("over");
    });
  }
  for (const name of ["dragleave", "drop"]) {
    ui.drop.addEventListener(name, () => ui.drop.classList.remove("over"));
  }
  ui.drop.addEventListener("drop", (event) => {
    event.preventDefault();
    choose(event.dataTransfer.files[0]);
  });

  loadModels().catch((err) => setStatus(err.message, "error"));
})();
