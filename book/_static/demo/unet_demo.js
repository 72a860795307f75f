/* The book's in-browser demo: the published U-Net segments a slice in the reader's browser.

   Overlap-tile prediction as unet_course.predict_tiled does it (chapter 3), in JavaScript:
   mirror padding, valid tiles of a size the network takes, outputs stitched by averaging.
   The network runs in ONNX Runtime Web (WebAssembly, one thread); the files it reads
   (meta.json, model.onnx, the slices, the runtime) are written by book/_ext/browser_demo.py.
   With ?selftest=1 the page segments the first slice and writes into #unet-demo-selftest how
   far its probabilities are from PyTorch's. */
(function () {
  "use strict";

  // --- overlap-tile: the functions chapter 3 explains, one for one ---------------------------

  // [valid-size-start]
  /* The smallest input side >= size that the network takes: min_size + k·step (UNet.valid_input_size). */
  function validSize(size, rule) {
    if (size <= rule.min_size) return rule.min_size;
    return rule.min_size + Math.ceil((size - rule.min_size) / rule.step) * rule.step;
  }

  /* The default tile (sizes.prediction_tile_size): the paper's 572, or the smallest tile that
     covers the whole image in one pass when that is smaller. */
  function defaultTileSize(height, width, rule) {
    return Math.min(validSize(rule.paper_tile, rule), validSize(Math.max(height, width) + 2 * rule.margin, rule));
  }

  /* This page's default: one tile for the whole image up to WHOLE_IMAGE_SIDE, which is fastest here
     (fewer pixels predicted twice; the performance page measures it), else the library's default.
     A valid U-Net gives the same probabilities at every tile size. */
  const WHOLE_IMAGE_SIDE = 1024;
  function pageTileSize(height, width, rule) {
    if (Math.max(height, width) > WHOLE_IMAGE_SIDE) return defaultTileSize(height, width, rule);
    return validSize(Math.max(height, width) + 2 * rule.margin, rule);
  }
  // [valid-size-end]

  // [mirror-pad-start]
  /* Source index of position i in [-before, length + after) when mirroring at both ends
     (as tiling.mirror_pad): the border pixel is not repeated, and pads may exceed the image. */
  function reflectIndex(i, length) {
    if (length === 1) return 0;
    const period = 2 * (length - 1);
    const p = ((i % period) + period) % period;
    return p >= length ? period - p : p;
  }

  /* The image (height × width, row-major) extended by mirroring by left, right, top and bottom
     pixels (tiling.mirror_pad). */
  function mirrorPad(image, height, width, left, right, top, bottom) {
    const outHeight = top + height + bottom, outWidth = left + width + right;
    const padded = new Float32Array(outHeight * outWidth);
    const cols = Array.from({length: outWidth}, (_, x) => reflectIndex(x - left, width));
    for (let y = 0; y < outHeight; y++) {
      const source = reflectIndex(y - top, height) * width, row = y * outWidth;
      for (let x = 0; x < outWidth; x++) padded[row + x] = image[source + cols[x]];
    }
    return {data: padded, height: outHeight, width: outWidth};
  }
  // [mirror-pad-end]

  // [tile-grid-start]
  /* Top-left corners of the output tiles covering the image (as predict_tiled places them): tiles
     move by a multiple of the network's downsampling factor, so that each one pools the same
     pixel pairs as the whole image would. */
  function tileGrid(tileSize, height, width, rule) {
    const outTile = tileSize - 2 * rule.margin;
    const step = Math.floor(outTile / rule.alignment) * rule.alignment;
    if (step < 1) throw new Error(`a ${tileSize}-px tile leaves ${outTile} output px, fewer than ${rule.alignment}`);
    const count = (side) => 1 + Math.ceil(Math.max(side - outTile, 0) / step);
    const corners = (side) => Array.from({length: count(side)}, (_, k) => k * step);
    return {outTile, rows: corners(height), cols: corners(width)};
  }
  // [tile-grid-end]

  // [predict-tiled-start]
  /* Probability of class 1 for every pixel (tiling.predict_tiled, no TTA): mirror-pad by the
     margin, predict each tile, softmax, add it into the sum and count, divide. runTile maps a
     tileSize² Float32Array to the network's logits (num_classes × outTile²). */
  async function predictTiled(runTile, image, height, width, tileSize, rule, onTile) {
    const {outTile, rows, cols} = tileGrid(tileSize, height, width, rule);
    const m = rule.margin, lastRow = rows[rows.length - 1], lastCol = cols[cols.length - 1];
    const padded = mirrorPad(image, height, width, m, lastCol + outTile + m - width, m, lastRow + outTile + m - height);
    const totalHeight = lastRow + outTile, totalWidth = lastCol + outTile;
    const total = new Float32Array(totalHeight * totalWidth), counts = new Float32Array(totalHeight * totalWidth);
    const tile = new Float32Array(tileSize * tileSize), plane = outTile * outTile;
    let done = 0;
    for (const y of rows) {
      for (const x of cols) {
        for (let r = 0; r < tileSize; r++) {
          const from = (y + r) * padded.width + x;
          tile.set(padded.data.subarray(from, from + tileSize), r * tileSize);
        }
        const logits = await runTile(tile, tileSize);
        for (let r = 0; r < outTile; r++) {
          for (let c = 0; c < outTile; c++) {
            const i = r * outTile + c, at = (y + r) * totalWidth + x + c;
            total[at] += softmaxOne(logits, i, plane, rule.num_classes);
            counts[at] += 1;
          }
        }
        done += 1;
        if (onTile) await onTile(done, rows.length * cols.length);
      }
    }
    const probability = new Float32Array(height * width);
    for (let r = 0; r < height; r++) {
      for (let c = 0; c < width; c++) {
        probability[r * width + c] = total[r * totalWidth + c] / counts[r * totalWidth + c];
      }
    }
    return {probability, tiles: rows.length * cols.length};
  }

  /* Softmax over the classes of pixel i, the probability of class 1 (logits are class-major planes). */
  function softmaxOne(logits, i, plane, numClasses) {
    let largest = -Infinity, sum = 0;
    for (let k = 0; k < numClasses; k++) largest = Math.max(largest, logits[k * plane + i]);
    for (let k = 0; k < numClasses; k++) sum += Math.exp(logits[k * plane + i] - largest);
    return Math.exp(logits[plane + i] - largest) / sum;
  }
  // [predict-tiled-end]

  // --- the page -------------------------------------------------------------------------------

  const MAX_SIDE = 2048;  // larger images would hold the reader's tab for minutes
  const root = document.getElementById("unet-demo");
  if (!root) return;
  const assets = new URL(root.dataset.assets, document.baseURI).href;
  const params = new URLSearchParams(window.location.search);
  const $ = (name) => document.getElementById(`unet-demo-${name}`);
  let meta = null, session = null, current = null;  // current: {image, height, width, name}

  function missingMessage() {
    return `This build of the book has no in-browser demo; it needs ${meta.missing.join(" and ")}.`;
  }

  function say(text, isError) {
    $("status").textContent = text;
    $("status").classList.toggle("unet-demo-error", Boolean(isError));
  }

  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = src;
      script.onload = resolve;
      script.onerror = () => reject(new Error(`could not load ${src}`));
      document.head.appendChild(script);
    });
  }

  async function getSession() {
    if (session) return session;
    say(`Loading ONNX Runtime Web and the network (${(meta.model_bytes / 1e6).toFixed(1)} MB), once…`);
    if (typeof ort === "undefined") await loadScript(assets + meta.runtime);
    ort.env.wasm.numThreads = 1;  // threads need cross-origin isolation, which static hosts cannot set
    ort.env.wasm.wasmPaths = new URL(meta.runtime, assets).href.replace(/[^/]*$/, "");
    ort.env.logLevel = "error";
    session = await ort.InferenceSession.create(assets + meta.model, {executionProviders: ["wasm"]});
    return session;
  }

  async function runTile(tile, tileSize) {
    const input = new ort.Tensor("float32", tile, [1, 1, tileSize, tileSize]);
    const outputs = await session.run({[session.inputNames[0]]: input});
    return outputs[session.outputNames[0]].data;
  }

  /* Grey values in [0, 1] from a decoded image, as the library reads 8-bit files; refuses colour. */
  function greyPixels(bitmap, name) {
    const {width, height} = bitmap;
    if (Math.min(width, height) < meta.margin) {
      throw new Error(`${name} is ${width}×${height} px; the network looks ${meta.margin} px around every pixel, ` +
                      `so give it an image at least ${meta.margin}×${meta.margin} px`);
    }
    if (Math.max(width, height) > MAX_SIDE) {
      throw new Error(`${name} is ${width}×${height} px, more than this page's ${MAX_SIDE} px per side; ` +
                      `crop it, or segment it with unet-course predict`);
    }
    const canvas = document.createElement("canvas");
    canvas.width = width; canvas.height = height;
    const context = canvas.getContext("2d");
    context.drawImage(bitmap, 0, 0);
    const rgba = context.getImageData(0, 0, width, height).data;
    const image = new Float32Array(width * height);
    for (let i = 0; i < image.length; i++) {
      const red = rgba[4 * i], green = rgba[4 * i + 1], blue = rgba[4 * i + 2];
      if (red !== green || green !== blue) {
        throw new Error(`${name} is a colour image; the network was trained on grey electron micrographs: ` +
                        `save it as 8-bit greyscale and try again`);
      }
      image[i] = red / 255;
    }
    return {image, height, width, name};
  }

  async function decode(blob, name) {
    try {
      return await createImageBitmap(blob);
    } catch (error) {
      throw new Error(`${name} is not an image this browser can read; use a PNG or JPEG file`);
    }
  }

  function draw(canvasName, width, height, paint) {
    const canvas = $(canvasName);
    canvas.width = width; canvas.height = height;
    const context = canvas.getContext("2d");
    const pixels = context.createImageData(width, height);
    for (let i = 0; i < width * height; i++) paint(pixels.data, i);
    context.putImageData(pixels, 0, 0);
  }

  function showImage({image, height, width}) {
    draw("image", width, height, (rgba, i) => {
      const v = Math.round(image[i] * 255);
      rgba.set([v, v, v, 255], 4 * i);
    });
    for (const name of ["probability", "mask"]) $(name).width = $(name).height = 0;
  }

  function showResult({image, height, width}, probability) {
    draw("probability", width, height, (rgba, i) => {
      const v = Math.round(probability[i] * 255);
      rgba.set([v, v, v, 255], 4 * i);
    });
    draw("mask", width, height, (rgba, i) => {  // the mask is cell interior (p > threshold); the rest is drawn magenta
      const v = image[i] * 255, inside = probability[i] > meta.threshold;
      rgba.set(inside ? [v, v, v, 255] : [0.4 * v + 153, 0.4 * v, 0.4 * v + 153, 255], 4 * i);
    });
  }

  function fillTileSizes(height, width) {
    const smallest = validSize(2 * meta.margin + meta.alignment, meta);  // at least one step of output
    const largest = validSize(Math.max(height, width) + 2 * meta.margin, meta);  // one tile covers the image
    const asked = Number(params.get("tile"));  // ?tile=572 (the benchmark sets it); only a size the network takes
    const chosen = asked >= smallest && validSize(asked, meta) === asked ? asked : pageTileSize(height, width, meta);
    const select = $("tile");
    select.innerHTML = "";
    for (let size = smallest; size <= Math.max(largest, chosen); size += meta.step) {
      const {rows, cols} = tileGrid(size, height, width, meta);
      select.add(new Option(`${size} px (${rows.length * cols.length} tiles)`, size, false, size === chosen));
    }
  }

  async function choose(loaded) {
    current = loaded;
    showImage(current);
    fillTileSizes(current.height, current.width);
    $("run").disabled = Boolean(meta.missing.length);
    if (meta.missing.length) say(missingMessage(), true);
    else say(`${current.name}: ${current.width}×${current.height} px. Press Segment.`);
  }

  async function chooseSample(index) {
    const sample = meta.samples[index];
    const response = await fetch(assets + sample.file);
    const name = `ISBI 2012 slice ${sample.slice}`;
    await choose(greyPixels(await decode(await response.blob(), name), name));
  }

  async function segment() {
    const {image, height, width, name} = current;
    const tileSize = Number($("tile").value);
    $("run").disabled = true;
    try {
      await getSession();
      const progress = $("progress");
      progress.value = 0;
      say(`${name}: predicting ${tileSize}-px tiles…`);
      const start = performance.now();
      const result = await predictTiled(runTile, image, height, width, tileSize, meta, async (done, all) => {
        progress.max = all; progress.value = done;
        say(`${name}: tile ${done} of ${all}…`);
        await new Promise((resolve) => setTimeout(resolve, 0));  // let the page repaint
      });
      const ms = performance.now() - start;
      showResult(current, result.probability);
      say(`${name}: ${result.tiles} tile(s) of ${tileSize} px in ${(ms / 1000).toFixed(2)} s ` +
          `(one thread); mask = probability above ${meta.threshold}.`);
      return {...result, ms, tileSize};
    } finally {
      $("run").disabled = false;
    }
  }

  async function selfTest() {
    const reference = meta.reference;
    if (!reference) throw new Error("this build of the book has no reference probabilities (no ISBI 2012 slices)");
    await chooseSample(0);
    const result = await segment();
    const expected = new Float32Array(await (await fetch(assets + reference.file)).arrayBuffer());
    let largest = 0, agree = 0;
    for (let i = 0; i < expected.length; i++) {
      largest = Math.max(largest, Math.abs(result.probability[i] - expected[i]));
      agree += (result.probability[i] > meta.threshold) === (expected[i] > meta.threshold);
    }
    return {max_abs_diff: largest, mask_agreement: agree / expected.length, ms: Math.round(result.ms),
            tile_size: result.tileSize, tiles: result.tiles};
  }

  async function start() {
    meta = await (await fetch(assets + "meta.json")).json();
    if (meta.missing.length) say(missingMessage(), true);
    meta.samples.forEach((sample, i) => $("sample").add(new Option(`ISBI 2012 slice ${sample.slice}`, i)));
    $("sample").addEventListener("change", () => {
      chooseSample(Number($("sample").value)).catch((error) => say(error.message, true));
    });
    $("file").addEventListener("change", async () => {
      const file = $("file").files[0];
      if (!file) return;
      try {
        await choose(greyPixels(await decode(file, file.name), file.name));
      } catch (error) {
        current = null;
        $("run").disabled = true;
        say(error.message, true);
      }
    });
    $("run").addEventListener("click", () => segment().catch((e) => say(e.message, true)));
    if (meta.samples.length && !meta.missing.length) await chooseSample(0);
    if (params.get("selftest")) {
      const report = $("selftest");
      report.hidden = false;
      report.textContent = JSON.stringify(await selfTest().catch((error) => ({error: error.message})));
    }
  }

  start().catch((error) => say(`The demo could not start: ${error.message}`, true));
})();
