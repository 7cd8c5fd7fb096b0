#!/usr/bin/env node
/**
 * Runs one TF.js model (graph or layers format) for convertkit and serves inference requests
 * over stdin/stdout until stdin closes.
 *
 *   node run_model.mjs MODEL_DIR [--backend wasm|cpu]
 *   node run_model.mjs - [--backend wasm|cpu]
 *
 * MODEL_DIR holds model.json and its weight shards. The process is started once per validation
 * by converter/formats/tfjs/runner.py (TfjsRunner). With `-` instead of a directory, Node starts
 * TF.js and its backend at once and then waits for a load request naming the model: convertkit
 * starts it that way while the model is still being converted (runner.py: prestart), so Node's
 * start-up overlaps Python's work.
 *
 * Protocol: both directions carry frames (wire.mjs), and nothing but frames is written to stdout
 * (console output is redirected to stderr, which is free-form log text).
 *
 *   frame   = u32 little-endian N | N bytes of UTF-8 JSON header | payload
 *   payload = the raw bytes of each tensor the header lists, concatenated in header order,
 *             each `byteLength` long (so the header alone says how many bytes follow)
 *   tensor  = {"name", "dtype", "shape", "byteLength"}; dtype is float32 | int32 | bool;
 *             data is C-order, little-endian, bool as one byte (0/1) per element
 *
 * 0. Only when started with `-`: the first request is {"type": "load", "model_dir": "..."} (no
 *    payload); stdin closing before it ends the process quietly (the prestarted Node was not needed),
 *    and so does waiting longer than `--idle-exit SECONDS` (a long-lived Python session that never
 *    ran a TF.js model).
 * 1. After loading, Node sends one frame (empty payload):
 *      {"type": "ready", "format": "graph-model"|"layers-model", "backend", "tfjs", "node",
 *       "inputs": [{"name", "shape", "dtype"}], "outputs": [...], "load_ms", "flags"}
 *    (a null shape entry is a dimension of any size; null shape/dtype: not known before running)
 *    or, if the model cannot be loaded, {"type": "error", "kind": "load", "error": "..."}
 *    and exits with status 1.
 * 2. Each request: {"type": "infer", "inputs": [tensor, ...]} + payload.
 *    Response: {"type": "result", "outputs": [tensor, ...], "ms": {"run", "total"}} + payload
 *    (run: making the input tensors and executing; total: also reading the outputs back),
 *    or {"type": "error", "kind": "input"|"runtime", "error": "..."} with an empty payload.
 *    A request that cannot be framed (bad JSON, bad byteLength) gets
 *    {"type": "error", "kind": "protocol", ...} and Node exits with status 2: the stream
 *    cannot be resynchronised.
 * A response frame is built in full before its first byte is written, so an error never
 * leaves a half-written frame behind.
 *
 * Modules are resolved from CONVERTKIT_NODE_MODULES when set (then NODE_PATH), else from the
 * node_modules beside this file; CommonJS `require` is used because ESM imports ignore NODE_PATH.
 */
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileHandler } from './fs_handler.mjs';
import {
  InputError, ProtocolError, Reader, checkEndianness, frame, oneLine, quietConsole, readHeader, readPayload, send,
} from './wire.mjs';

// TF.js prints banners and warnings with console.*; stdout belongs to the protocol, so they go to
// stderr, once each, without the noise that would bury a real error in the runner's stderr tail.
const NOISE = [
  'This model execution did not contain any nodes with control flow',  // executeAsync, every call
  'Hi, looks like you are running TensorFlow.js in Node.js',  // advertises tfjs-node
  '============================',
];
quietConsole(NOISE);

const DTYPES = {
  float32: Float32Array,
  int32: Int32Array,
  bool: Uint8Array,
};

function parseArgs(argv) {
  const opts = { modelDir: null, backend: 'wasm', idleExit: 0 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--backend') opts.backend = argv[++i];
    else if (a.startsWith('--backend=')) opts.backend = a.slice('--backend='.length);
    else if (a === '--idle-exit') opts.idleExit = Number(argv[++i]);
    else if (!a.startsWith('--') && opts.modelDir === null) opts.modelDir = a;
    else throw new Error(`unknown argument '${a}' (usage: run_model.mjs MODEL_DIR [--backend wasm|cpu])`);
  }
  if (!opts.modelDir) throw new Error('usage: run_model.mjs MODEL_DIR|- [--backend wasm|cpu]');
  if (!['wasm', 'cpu'].includes(opts.backend)) throw new Error(`unknown backend '${opts.backend}' (wasm or cpu)`);
  if (!(opts.idleExit >= 0)) throw new Error('--idle-exit takes a number of seconds');
  return opts;
}

function loadTfjs(backend) {
  const modulesDir = process.env.CONVERTKIT_NODE_MODULES;
  const anchor = modulesDir ? path.join(path.resolve(modulesDir), '_resolve_from_here.cjs') : import.meta.url;
  const require = createRequire(anchor);
  const tf = require('@tensorflow/tfjs');
  if (backend === 'wasm') require('@tensorflow/tfjs-backend-wasm');  // registers the backend
  return tf;
}

function modelFormat(modelDir) {
  const json = JSON.parse(fs.readFileSync(path.join(modelDir, 'model.json'), 'utf8'));
  if (json.format === 'graph-model' || json.format === 'layers-model') return json.format;
  // Older converters left `format` out; a graph model's topology is a GraphDef with `node`.
  return json.modelTopology && Array.isArray(json.modelTopology.node) ? 'graph-model' : 'layers-model';
}

/** Uniform view of a loaded model: names, specs and a run(namedTensors) -> tensors. */
async function loadModel(tf, modelDir) {
  const format = modelFormat(modelDir);
  const handler = fileHandler(tf, modelDir);
  // -1 (graph models) and null (layers models) both mean "any size": send null.
  const dims = (shape) => (shape ? shape.map((d) => (d == null || d < 0 ? null : d)) : null);
  const spec = (name, info) => ({ name, shape: dims(info.shape), dtype: info.dtype ?? null });
  if (format === 'graph-model') {
    const model = await tf.loadGraphModel(handler);
    const inputNames = model.inputNodes;  // signature keys when model.json has a signature
    const outputNames = model.outputNodes;
    return {
      format, inputNames, outputNames,
      inputs: model.inputs.map((info, i) => spec(inputNames[i], info)),
      outputs: model.outputs.map((info, i) => spec(outputNames[i], info)),
      // executeAsync handles control flow (While/If) as well as plain graphs.
      run: async (named) => {
        const out = await model.executeAsync(named, outputNames);
        return Array.isArray(out) ? out : [out];  // a single output comes back bare
      },
    };
  }
  const model = await tf.loadLayersModel(handler);
  // A loaded Sequential model is built lazily; building sets inputNames/outputNames.
  if (!model.inputNames?.length) model.build();
  return {
    format, inputNames: model.inputNames, outputNames: model.outputNames,
    inputs: model.inputs.map((t, i) => spec(model.inputNames[i], t)),
    outputs: model.outputs.map((t, i) => spec(model.outputNames[i], t)),
    run: async (named) => {
      const out = model.predict(model.inputNames.map((n) => named[n]));
      return Array.isArray(out) ? out : [out];
    },
  };
}

/** The model directory of a prestarted process's load request; null when stdin closes first. */
async function readLoad(reader) {
  const header = await readHeader(reader);
  if (header === null) return null;
  if (header.type !== 'load' || typeof header.model_dir !== 'string') {
    throw new ProtocolError('the first request must be {"type": "load", "model_dir": "..."}');
  }
  return header.model_dir;
}

async function readRequest(reader) {
  const header = await readHeader(reader);
  if (header === null) return null;
  const specs = header.inputs;
  if (header.type !== 'infer' || !Array.isArray(specs)) {
    throw new ProtocolError('request header must be {"type": "infer", "inputs": [...]}');
  }
  const payload = await readPayload(reader, specs);
  return { specs, payload };
}

/** Shape/dtype mismatches are the caller's mistake: say so before TF.js fails less clearly. */
function checkAgainstModel(expected, s) {
  if (!expected) return;
  const want = expected.shape;
  if (want && (want.length !== s.shape.length || want.some((d, i) => d !== null && d !== s.shape[i]))) {
    const fmt = (shape) => `[${shape.map((d) => (d === null ? '?' : d)).join(',')}]`;
    throw new InputError(`input '${s.name}' has shape ${fmt(s.shape)}; the model expects ${fmt(want)}`);
  }
  // Only dtypes TF.js can hold are compared: a layers model may declare int64, see runner.py.
  if (expected.dtype in DTYPES && expected.dtype !== s.dtype) {
    throw new InputError(`input '${s.name}' is ${s.dtype}; the model expects ${expected.dtype}`);
  }
}

function toTensors(tf, model, specs, payload) {
  const known = new Set(model.inputNames);
  const named = {};
  let offset = 0;
  try {
    for (const s of specs) {
      const bytes = payload.subarray(offset, offset + s.byteLength);
      offset += s.byteLength;
      if (!known.has(s.name)) {
        throw new InputError(`unknown input '${s.name}'; the model's inputs are [${model.inputNames.join(', ')}]`);
      }
      const Typed = DTYPES[s.dtype];
      if (!Typed) throw new InputError(`input '${s.name}' has dtype ${s.dtype}; TF.js takes float32, int32 or bool`);
      if (!Array.isArray(s.shape) || !s.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
        throw new InputError(`input '${s.name}' has an invalid shape ${JSON.stringify(s.shape)}`);
      }
      checkAgainstModel(model.inputs.find((m) => m.name === s.name), s);
      const count = s.shape.reduce((a, b) => a * b, 1);
      if (count * Typed.BYTES_PER_ELEMENT !== s.byteLength) {
        throw new InputError(`input '${s.name}': shape [${s.shape}] of ${s.dtype} needs ` +
          `${count * Typed.BYTES_PER_ELEMENT} bytes, got ${s.byteLength}`);
      }
      // Copy into a fresh ArrayBuffer: the payload slice need not be aligned for Float32Array.
      const data = new Typed(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
      named[s.name] = tf.tensor(data, s.shape, s.dtype);
    }
    const missing = model.inputNames.filter((n) => !(n in named));
    if (model.format === 'layers-model' && missing.length) {
      throw new InputError(`missing input(s) [${missing.join(', ')}]`);
    }
  } catch (err) {
    tf.dispose(Object.values(named));
    throw err;
  }
  return named;
}

async function handle(tf, model, specs, payload) {
  const t0 = performance.now();
  const named = toTensors(tf, model, specs, payload);
  let outputs;
  try {
    outputs = await model.run(named);
  } finally {
    tf.dispose(Object.values(named));
  }
  const t1 = performance.now();
  try {
    const headers = [];
    const buffers = [];
    for (let i = 0; i < outputs.length; i++) {
      const t = outputs[i];
      if (!DTYPES[t.dtype]) throw new Error(`output '${model.outputNames[i]}' has dtype ${t.dtype}, not supported`);
      let data = await t.data();
      // TF.js 4.22's cpu backend can hand back a bool->float32 Cast's output as a Uint8Array: the
      // wire carries what the dtype says, so such data is widened to the dtype's array first
      if (!(data instanceof DTYPES[t.dtype])) data = DTYPES[t.dtype].from(data);
      const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      headers.push({ name: model.outputNames[i], dtype: t.dtype, shape: t.shape, byteLength: buf.length });
      buffers.push(buf);
    }
    const ms = { run: t1 - t0, total: performance.now() - t0 };
    return frame({ type: 'result', outputs: headers, ms }, buffers);
  } finally {
    tf.dispose(outputs);
  }
}

async function main() {
  let tf;
  let model;
  let opts;
  let t0 = performance.now();
  const reader = new Reader(process.stdin);
  try {
    checkEndianness();
    opts = parseArgs(process.argv.slice(2));
    tf = loadTfjs(opts.backend);
    if (!(await tf.setBackend(opts.backend))) throw new Error(`TF.js backend '${opts.backend}' failed to initialise`);
    await tf.ready();
    let modelDir = opts.modelDir;
    if (modelDir === '-') {
      const idle = opts.idleExit > 0 ? setTimeout(() => process.exit(0), opts.idleExit * 1000) : null;
      modelDir = await readLoad(reader);
      if (idle) clearTimeout(idle);
      if (modelDir === null) return;  // prestarted, never used
      t0 = performance.now();  // load_ms: from the request on
    }
    model = await loadModel(tf, path.resolve(modelDir));
  } catch (err) {
    if (err instanceof ProtocolError) {
      await send(frame({ type: 'error', kind: 'protocol', error: oneLine(err) }));
      process.exit(2);
    }
    await send(frame({ type: 'error', kind: 'load', error: oneLine(err) }));
    process.exitCode = 1;
    return;
  }
  const flags = {};
  for (const f of ['WASM_HAS_SIMD_SUPPORT', 'WASM_HAS_MULTITHREAD_SUPPORT']) {
    try { flags[f] = await tf.env().getAsync(f); } catch { /* flag not registered on this backend */ }
  }
  await send(frame({
    type: 'ready', format: model.format, backend: tf.getBackend(), tfjs: tf.version.tfjs, node: process.version,
    inputs: model.inputs, outputs: model.outputs, load_ms: performance.now() - t0, flags,
  }));

  for (;;) {
    let request;
    try {
      request = await readRequest(reader);
    } catch (err) {
      await send(frame({ type: 'error', kind: 'protocol', error: oneLine(err) }));
      process.exit(2);  // an open stdin would otherwise keep the process alive
    }
    if (request === null) return;  // stdin closed: done
    let response;
    try {
      response = await handle(tf, model, request.specs, request.payload);
    } catch (err) {
      const kind = err instanceof InputError ? 'input' : 'runtime';
      response = frame({ type: 'error', kind, error: oneLine(err) });
    }
    await send(response);
  }
}

await main();
