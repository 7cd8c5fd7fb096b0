#!/usr/bin/env node
/**
 * Runs ONNX models in onnxruntime-web (wasm execution provider) under Node for convertkit, and
 * serves requests over stdin/stdout until stdin closes. The ONNX work is ort_web_core.mjs (which
 * runs in a browser too); this file only does the process and file I/O.
 *
 *   node ort_web.mjs [--idle-exit SECONDS] [--threads N] [--warm]
 *
 * --warm opens a one-node model at start, so that the wasm module is compiled before the first
 * request (web_runner.prestart starts Node that way while Python still converts).
 *
 * Started by converter/formats/onnx/web_runner.py. Frames as in wire.mjs. Requests, in any order:
 *
 * - {"type": "probe", "models": [{"key", "byteLength"}]} + the one-node models' bytes ->
 *   {"type": "probed", "ort": version, "results": [{"key", "ok", "missing", "error"}]}
 *   (missing: onnxruntime-web has no kernel for the node's op; kernel preflight, web_kernels.py)
 * - {"type": "load", "path": "model.onnx", "external_data": [{"path", "file"}]} ->
 *   {"type": "ready", "ort", "node", "inputs": [{"name", "dtype", "shape"}], "outputs", "load_ms", "flags"}
 *   or {"type": "error", "kind": "load", "error"}.
 * - {"type": "infer", "inputs": [tensor, ...]} + payload, tensor = {"name", "dtype", "shape",
 *   "byteLength"} with dtype one of ort_web_core.TYPED, C order, little-endian, bool as one byte,
 *   float16 as its bits -> {"type": "result", "outputs": [tensor, ...], "ms": {"run", "total"}}
 *   + payload, or {"type": "error", "kind": "input"|"runtime", "error"}.
 * A request that cannot be framed gets {"type": "error", "kind": "protocol"} and exit status 2.
 * Waiting longer than --idle-exit for the first request ends the process quietly (prestarted, unused).
 *
 * onnxruntime-web is resolved from CONVERTKIT_NODE_MODULES when set, else from node_modules here.
 */
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { TYPED, configure, createSession, probeKernels, runSession } from './ort_web_core.mjs';
import {
  InputError, ProtocolError, Reader, checkEndianness, frame, oneLine, quietConsole, readHeader, readPayload, send, split,
} from './wire.mjs';

quietConsole();

// y = Identity(x), float32[1], opset 17: opening it compiles and instantiates the wasm module (--warm)
const WARM_MODEL = Buffer.from('CAgSADo3ChAKAXgSAXkiCElkZW50aXR5EgF3Wg8KAXgSCgoICAESBAoCCAFiDwoBeRIKCggIARIECgIIAUIECgAQEQ==', 'base64');

function parseArgs(argv) {
  const opts = { idleExit: 0, threads: 1, warm: false };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--idle-exit') opts.idleExit = Number(argv[++i]);
    else if (argv[i] === '--warm') opts.warm = true;
    else if (argv[i] === '--threads') opts.threads = Number(argv[++i]);
    else throw new Error(`unknown argument '${argv[i]}' (usage: ort_web.mjs [--idle-exit S] [--threads N])`);
  }
  return opts;
}

async function loadOrt() {
  const modulesDir = process.env.CONVERTKIT_NODE_MODULES;
  const anchor = modulesDir ? path.join(path.resolve(modulesDir), '_resolve_from_here.cjs') : import.meta.url;
  const require = createRequire(anchor);
  return import(require.resolve('onnxruntime-web'));  // the package's "node" export (ESM)
}

async function load(ort, header) {
  if (typeof header.path !== 'string') throw new ProtocolError('a load request names the model: {"path": ...}');
  const bytes = fs.readFileSync(header.path);
  const externalData = (header.external_data || []).map((e) => ({ path: e.path, data: fs.readFileSync(e.file) }));
  return createSession(ort, bytes, { externalData });
}

function feedsOf(model, specs, payload) {
  const known = new Set(model.session.inputNames);
  const buffers = split(payload, specs);
  const feeds = {};
  specs.forEach((s, i) => {
    if (!known.has(s.name)) {
      throw new InputError(`unknown input '${s.name}'; the model's inputs are [${[...known].join(', ')}]`);
    }
    const Typed = TYPED[s.dtype];
    if (!Typed) throw new InputError(`input '${s.name}' has dtype ${s.dtype}, which onnxruntime-web cannot take`);
    if (!Array.isArray(s.shape) || !s.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new InputError(`input '${s.name}' has an invalid shape ${JSON.stringify(s.shape)}`);
    }
    const count = s.shape.reduce((a, b) => a * b, 1);
    if (count * Typed.BYTES_PER_ELEMENT !== s.byteLength) {
      throw new InputError(`input '${s.name}': shape [${s.shape}] of ${s.dtype} needs ${count * Typed.BYTES_PER_ELEMENT} bytes`);
    }
    feeds[s.name] = { dtype: s.dtype, shape: s.shape, data: new Typed(buffers[i]) };
  });
  const missing = [...known].filter((n) => !(n in feeds));
  if (missing.length) throw new InputError(`missing input(s) [${missing.join(', ')}]`);
  return feeds;
}

async function infer(ort, model, specs, payload) {
  const t0 = performance.now();
  const outputs = await runSession(ort, model.session, feedsOf(model, specs, payload));
  const t1 = performance.now();
  const headers = [];
  const buffers = [];
  for (const o of outputs) {
    const buf = Buffer.from(o.data.buffer, o.data.byteOffset, o.data.byteLength);
    headers.push({ name: o.name, dtype: o.dtype, shape: o.shape, byteLength: buf.length });
    buffers.push(buf);
  }
  return frame({ type: 'result', outputs: headers, ms: { run: t1 - t0, total: performance.now() - t0 } }, buffers);
}

async function respond(ort, state, header, reader) {
  if (header.type === 'probe' && Array.isArray(header.models)) {
    const payload = await readPayload(reader, header.models);
    const models = split(payload, header.models).map((b, i) => ({ key: header.models[i].key, bytes: new Uint8Array(b) }));
    return frame({ type: 'probed', ort: ort.env.versions.web, results: await probeKernels(ort, models) });
  }
  if (header.type === 'load') {
    const t0 = performance.now();
    try {
      const previous = state.model;
      state.model = null;
      if (previous) await previous.session.release();  // one model at a time: a second load replaces it
      state.model = await load(ort, header);
    } catch (err) {
      if (err instanceof ProtocolError) throw err;
      return frame({ type: 'error', kind: 'load', error: oneLine(err) });
    }
    return frame({ type: 'ready', ort: ort.env.versions.web, node: process.version, inputs: state.model.inputs,
      outputs: state.model.outputs, load_ms: performance.now() - t0,
      flags: { numThreads: ort.env.wasm.numThreads, simd: ort.env.wasm.simd ?? null } });
  }
  if (header.type === 'infer' && Array.isArray(header.inputs)) {
    const payload = await readPayload(reader, header.inputs);
    if (!state.model) throw new ProtocolError('infer before load');
    try {
      return await infer(ort, state.model, header.inputs, payload);
    } catch (err) {
      return frame({ type: 'error', kind: err instanceof InputError ? 'input' : 'runtime', error: oneLine(err) });
    }
  }
  throw new ProtocolError(`unknown request ${JSON.stringify(header).slice(0, 200)}`);
}

async function main() {
  const reader = new Reader(process.stdin);
  let ort;
  let idle = null;
  try {
    checkEndianness();
    const opts = parseArgs(process.argv.slice(2));
    ort = await loadOrt();
    configure(ort, { numThreads: opts.threads });
    if (opts.warm) await (await createSession(ort, WARM_MODEL)).session.release();
    idle = opts.idleExit > 0 ? setTimeout(() => process.exit(0), opts.idleExit * 1000) : null;
  } catch (err) {
    await send(frame({ type: 'error', kind: 'load', error: oneLine(err) }));
    process.exitCode = 1;
    return;
  }
  const state = { model: null };
  for (;;) {
    let response;
    try {
      const header = await readHeader(reader);
      if (idle) clearTimeout(idle);
      if (header === null) return;  // stdin closed: done
      response = await respond(ort, state, header, reader);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      await send(frame({ type: 'error', kind: 'protocol', error: oneLine(err) }));
      process.exit(2);
    }
    await send(response);
  }
}

await main();
