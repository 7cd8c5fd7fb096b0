/**
 * convertkit's runner page: runs a TF.js or ONNX model in the browser and answers convertkit's
 * frames (the Node runners' protocol: run_model.mjs, ort_web.mjs) over HTTP: GET /ck/next gives the
 * next request frame, POST /ck/reply takes the answer (server.py).
 *
 *   runner.html?kind=tfjs&backend=webgl|wasm|cpu     TF.js (&f16=1: WebGL with float16 textures, as on
 *                                                   devices that render at 16 bits)
 *   runner.html?kind=onnx                            onnxruntime-web, wasm execution provider
 *
 * Requests: {"type": "load", "url", "external_data": [{path, url}]} -> {"type": "ready", ...};
 * {"type": "infer", "inputs": [tensor]} + payload -> {"type": "result", "outputs": [tensor], "ms"};
 * {"type": "probe", "models": [{key, byteLength}]} + payload -> {"type": "probed", "results"} (ONNX);
 * {"type": "close"} ends the loop. A failure is {"type": "error", "kind": "load"|"input"|"runtime", "error"}.
 */
import { TYPED, configure, createSession, probeKernels, runSession } from '/node/ort_web_core.mjs';

const params = new URLSearchParams(location.search);
const KIND = params.get('kind');
const BACKEND = params.get('backend') || 'wasm';
const state = document.getElementById('state');

class InputError extends Error {}
const oneLine = (err) => String(err && err.message ? err.message : err).replace(/\s+/g, ' ').trim();

// ---- frames --------------------------------------------------------------------------------

function parseFrame(bytes) {
  const n = new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(4, 4 + n)));
  return { header, payload: bytes.subarray(4 + n) };
}

function frame(header, buffers = []) {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const total = 4 + json.length + buffers.reduce((s, b) => s + b.byteLength, 0);
  const out = new Uint8Array(total);
  new DataView(out.buffer).setUint32(0, json.length, true);
  out.set(json, 4);
  let at = 4 + json.length;
  for (const b of buffers) {
    out.set(new Uint8Array(b.buffer, b.byteOffset, b.byteLength), at);
    at += b.byteLength;
  }
  return out;
}

/** One fresh ArrayBuffer per item (a slice of the payload need not be aligned for its typed array). */
function split(payload, items) {
  let at = 0;
  return items.map((s) => {
    const part = payload.slice(at, at + s.byteLength);
    at += s.byteLength;
    return part.buffer;
  });
}

// ---- TF.js ---------------------------------------------------------------------------------

const TFJS_TYPED = { float32: Float32Array, int32: Int32Array, bool: Uint8Array };

async function tfjsRuntime() {
  const tf = await import('@tensorflow/tfjs');
  if (BACKEND === 'wasm') {
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    wasm.setWasmPaths('/npm/@tensorflow/tfjs-backend-wasm/dist/');
  }
  // what a device whose WebGL renders at 16 bits computes (many phones): float16 textures throughout
  if (params.get('f16') === '1') tf.env().set('WEBGL_FORCE_F16_TEXTURES', true);
  if (!(await tf.setBackend(BACKEND))) throw new Error(`TF.js backend '${BACKEND}' did not start in this browser`);
  await tf.ready();
  let model = null;
  return {
    async load(header) {
      const json = await (await fetch(header.url)).json();
      const graph = json.format === 'graph-model' || Array.isArray(json.modelTopology?.node);
      model = graph ? await tfGraph(tf, header.url) : await tfLayers(tf, header.url);
      const flags = {};
      for (const f of ['WASM_HAS_SIMD_SUPPORT', 'WASM_HAS_MULTITHREAD_SUPPORT']) {
        try { flags[f] = await tf.env().getAsync(f); } catch { /* not registered on this backend */ }
      }
      return { format: model.format, backend: tf.getBackend(), tfjs: tf.version.tfjs, inputs: model.inputs,
        outputs: model.outputs, precision: precision(tf), flags };
    },
    infer: (specs, payload) => tfjsInfer(tf, model, specs, payload),
  };
}

const dims = (shape) => (shape ? shape.map((d) => (d == null || d < 0 ? null : d)) : null);

async function tfGraph(tf, url) {
  const m = await tf.loadGraphModel(url);
  const spec = (name, info) => ({ name, shape: dims(info.shape), dtype: info.dtype ?? null });
  return { format: 'graph-model', inputNames: m.inputNodes, outputNames: m.outputNodes,
    inputs: m.inputs.map((info, i) => spec(m.inputNodes[i], info)),
    outputs: m.outputs.map((info, i) => spec(m.outputNodes[i], info)),
    run: async (named) => { const out = await m.executeAsync(named, m.outputNodes); return Array.isArray(out) ? out : [out]; } };
}

async function tfLayers(tf, url) {
  const m = await tf.loadLayersModel(url);
  if (!m.inputNames?.length) m.build();
  const spec = (name, t) => ({ name, shape: dims(t.shape), dtype: t.dtype ?? null });
  return { format: 'layers-model', inputNames: m.inputNames, outputNames: m.outputNames,
    inputs: m.inputs.map((t, i) => spec(m.inputNames[i], t)), outputs: m.outputs.map((t, i) => spec(m.outputNames[i], t)),
    run: async (named) => { const out = m.predict(m.inputNames.map((n) => named[n])); return Array.isArray(out) ? out : [out]; } };
}

/** What the backend computes in: WebGL may render (and so compute) at 16 bits on real devices. */
function precision(tf) {
  const env = tf.env();
  const get = (f, how) => { try { return env[how](f); } catch { return null; } };
  if (tf.getBackend() !== 'webgl') return { backend: tf.getBackend(), float_bits: 32 };
  const gl = tf.backend().gpgpu?.gl;
  const fmt = gl ? gl.getShaderPrecisionFormat(gl.FRAGMENT_SHADER, gl.HIGH_FLOAT) : null;
  const info = gl ? gl.getExtension('WEBGL_debug_renderer_info') : null;
  const out = { backend: 'webgl', webgl_version: get('WEBGL_VERSION', 'getNumber'),
    render_float32: get('WEBGL_RENDER_FLOAT32_ENABLED', 'getBool'), force_f16: get('WEBGL_FORCE_F16_TEXTURES', 'getBool'),
    highp_bits: fmt ? fmt.precision : null, renderer: info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : null };
  out.float_bits = out.render_float32 && !out.force_f16 && (out.highp_bits ?? 23) >= 23 ? 32 : 16;
  return out;
}

async function tfjsInfer(tf, model, specs, payload) {
  const named = {};
  const buffers = split(payload, specs);
  const t0 = performance.now();
  let outputs;
  try {
    specs.forEach((s, i) => {
      if (!model.inputNames.includes(s.name)) throw new InputError(`unknown input '${s.name}'; the model's inputs are [${model.inputNames.join(', ')}]`);
      const Typed = TFJS_TYPED[s.dtype];
      if (!Typed) throw new InputError(`input '${s.name}' has dtype ${s.dtype}; TF.js takes float32, int32 or bool`);
      named[s.name] = tf.tensor(new Typed(buffers[i]), s.shape, s.dtype);
    });
    outputs = await model.run(named);
  } finally {
    tf.dispose(Object.values(named));
  }
  try {
    const data = await Promise.all(outputs.map((t) => t.data()));  // reading back waits for the GPU
    const t1 = performance.now();
    const headers = [];
    const bufs = [];
    outputs.forEach((t, i) => {
      const Typed = TFJS_TYPED[t.dtype];
      if (!Typed) throw new Error(`output '${model.outputNames[i]}' has dtype ${t.dtype}, not supported`);
      const arr = data[i] instanceof Typed ? data[i] : Typed.from(data[i]);
      headers.push({ name: model.outputNames[i], dtype: t.dtype, shape: t.shape, byteLength: arr.byteLength });
      bufs.push(arr);
    });
    return frame({ type: 'result', outputs: headers, ms: { run: t1 - t0, total: performance.now() - t0 } }, bufs);
  } finally {
    tf.dispose(outputs);
  }
}

// ---- onnxruntime-web -----------------------------------------------------------------------

async function onnxRuntime() {
  const ort = await import('onnxruntime-web');
  ort.env.wasm.wasmPaths = '/npm/onnxruntime-web/dist/';
  configure(ort, { numThreads: 1 });  // no worker threads: the page is not cross-origin isolated
  let session = null;
  return {
    async load(header) {
      const bytes = new Uint8Array(await (await fetch(header.url)).arrayBuffer());
      const externalData = (header.external_data || []).map((e) => ({ path: e.path, data: e.url }));
      const made = await createSession(ort, bytes, { externalData });
      session = made.session;
      return { ort: ort.env.versions?.web ?? null, backend: 'wasm', inputs: made.inputs, outputs: made.outputs,
        precision: { backend: 'wasm', float_bits: 32 } };
    },
    async infer(specs, payload) {
      const buffers = split(payload, specs);
      const feeds = {};
      specs.forEach((s, i) => {
        const Typed = TYPED[s.dtype];
        if (!Typed) throw new InputError(`input '${s.name}' has dtype ${s.dtype}, which onnxruntime-web does not take`);
        feeds[s.name] = { dtype: s.dtype, shape: s.shape, data: new Typed(buffers[i]) };
      });
      const t0 = performance.now();
      const out = await runSession(ort, session, feeds);
      const t1 = performance.now();
      const headers = out.map((o) => ({ name: o.name, dtype: o.dtype, shape: o.shape, byteLength: o.data.byteLength }));
      return frame({ type: 'result', outputs: headers, ms: { run: t1 - t0, total: performance.now() - t0 } }, out.map((o) => o.data));
    },
    async probe(models, payload) {
      const blobs = split(payload, models.map((m) => ({ byteLength: m.byteLength })));
      const results = await probeKernels(ort, models.map((m, i) => ({ key: m.key, bytes: new Uint8Array(blobs[i]) })));
      return frame({ type: 'probed', ort: ort.env.versions?.web ?? null, results });
    },
  };
}

// ---- the loop ------------------------------------------------------------------------------

async function handle(runtime, header, payload) {
  if (header.type === 'load') {
    const t0 = performance.now();
    try {
      const ready = await runtime.load(header);
      return frame({ type: 'ready', ...ready, user_agent: navigator.userAgent, load_ms: performance.now() - t0 });
    } catch (err) {
      return frame({ type: 'error', kind: 'load', error: oneLine(err) });
    }
  }
  if (header.type === 'infer') return runtime.infer(header.inputs, payload);
  if (header.type === 'probe' && runtime.probe) return runtime.probe(header.models, payload);
  return frame({ type: 'error', kind: 'protocol', error: `unknown request type '${header.type}'` });
}

async function reply(bytes) {
  await fetch('/ck/reply', { method: 'POST', body: bytes });
}

async function main() {
  let runtime = null;
  let failed = null;
  try {
    runtime = KIND === 'onnx' ? await onnxRuntime() : await tfjsRuntime();
    state.textContent = 'waiting';
  } catch (err) {
    failed = oneLine(err);  // every request gets the reason
    state.textContent = 'failed';
  }
  for (;;) {
    const res = await fetch('/ck/next', { cache: 'no-store' });
    if (res.status === 204) continue;
    if (res.status !== 200) throw new Error(`convertkit's server answered ${res.status}`);
    const { header, payload } = parseFrame(new Uint8Array(await res.arrayBuffer()));
    if (header.type === 'close') break;
    let out;
    try {
      if (failed !== null) throw new Error(`the runtime did not start in the browser: ${failed}`);
      out = await handle(runtime, header, payload);
    } catch (err) {
      out = frame({ type: 'error', kind: err instanceof InputError ? 'input' : failed ? 'load' : 'runtime', error: oneLine(err) });
    }
    await reply(out);
  }
  state.textContent = 'closed';
}

main();
