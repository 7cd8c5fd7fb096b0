#!/usr/bin/env node
/**
 * Runs one TF.js model many times in one process, each time with a few of its weights replaced:
 * what converter/passes/tfjs_weight_map.py measures the sensitivity of each weight with (quantize
 * one tensor, run the model, compare) without starting Node and loading the model once per probe.
 *
 *   node probe_weights.mjs JOB.json
 *
 * JOB.json: {"model_dir", "backend": "wasm"|"cpu", "data": "BLOB", "out": "OUT",
 *            "feeds": [[tensor, ...] per sample], "probes": [[tensor, ...] per probe]}
 * tensor = {"name", "dtype": "float32"|"int32"|"bool", "shape", "offset", "byteLength"}: its bytes
 * lie in BLOB at offset (C order, little-endian). A probe's tensors are weights (manifest names)
 * that replace the model's own for that probe only.
 *
 * Runs the model on every sample as loaded (run 0), then once per probe (run 1..P). OUT gets the
 * outputs as float32, run by run, sample by sample, output by output. stdout gets one JSON line:
 * {"outputs": [[{"name", "shape"}] per sample], "runs": P + 1, "ms": total}; an error: {"error"}
 * and exit status 1.
 *
 * Modules resolve as in run_model.mjs (CONVERTKIT_NODE_MODULES, else node_modules beside this file).
 */
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileHandler } from './fs_handler.mjs';

const TYPED = { float32: Float32Array, int32: Int32Array, bool: Uint8Array };

for (const level of ['log', 'info', 'debug', 'warn']) {
  console[level] = () => {};  // TF.js banners would otherwise go to stdout, which carries the answer
}

function loadTfjs(backend) {
  const modulesDir = process.env.CONVERTKIT_NODE_MODULES;
  const anchor = modulesDir ? path.join(path.resolve(modulesDir), '_resolve_from_here.cjs') : import.meta.url;
  const require = createRequire(anchor);
  const tf = require('@tensorflow/tfjs');
  if (backend === 'wasm') require('@tensorflow/tfjs-backend-wasm');
  return tf;
}

function tensorOf(tf, blob, t) {
  const bytes = blob.subarray(t.offset, t.offset + t.byteLength);
  const Typed = TYPED[t.dtype];
  return tf.tensor(new Typed(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)),
    t.shape, t.dtype);
}

/** {run(named) -> tensors, outputNames, swap(name -> tensor) -> restore()} for either model kind. */
async function load(tf, modelDir) {
  const json = JSON.parse(fs.readFileSync(path.join(modelDir, 'model.json'), 'utf8'));
  const graph = json.format === 'graph-model' || (json.modelTopology && Array.isArray(json.modelTopology.node));
  const handler = fileHandler(tf, modelDir);
  if (graph) {
    const model = await tf.loadGraphModel(handler);
    return {
      outputNames: model.outputNodes,
      run: async (named) => [].concat(await model.executeAsync(named, model.outputNodes)),
      // The executor's weightMap setter also records the weights' tensor ids, which execution keeps
      // alive: a swapped-in weight is not disposed as an intermediate.
      swap: (replacements) => {
        const original = model.executor.weightMap;
        const next = { ...original };
        for (const [name, t] of Object.entries(replacements)) {
          if (!(name in original)) throw new Error(`the model has no weight '${name}'`);
          next[name] = [t];
        }
        model.executor.weightMap = next;
        return () => { model.executor.weightMap = original; };
      },
    };
  }
  const model = await tf.loadLayersModel(handler);
  if (!model.inputNames?.length) model.build();
  const byName = new Map(model.weights.map((v) => [v.originalName, v]));
  return {
    outputNames: model.outputNames,
    run: async (named) => [].concat(model.predict(model.inputNames.map((n) => named[n]))),
    swap: (replacements) => {
      const saved = [];
      for (const [name, t] of Object.entries(replacements)) {
        const v = byName.get(name);
        if (!v) throw new Error(`the model has no weight '${name}'`);
        saved.push([v, v.read().clone()]);
        v.write(t);
      }
      return () => { for (const [v, old] of saved) { v.write(old); old.dispose(); } };
    },
  };
}

async function runAll(tf, model, feeds) {
  const chunks = [];
  const specs = [];
  for (const named of feeds) {
    const outs = await model.run(named);
    const spec = [];
    for (let i = 0; i < outs.length; i++) {
      const data = await outs[i].cast('float32').data();
      chunks.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
      spec.push({ name: model.outputNames[i], shape: outs[i].shape });
    }
    tf.dispose(outs);
    specs.push(spec);
  }
  return { chunks, specs };
}

async function main() {
  const t0 = performance.now();
  const job = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  const tf = loadTfjs(job.backend);
  if (!(await tf.setBackend(job.backend))) throw new Error(`TF.js backend '${job.backend}' failed to initialise`);
  await tf.ready();
  const blob = fs.readFileSync(job.data);
  const model = await load(tf, path.resolve(job.model_dir));
  const feeds = job.feeds.map((sample) => Object.fromEntries(sample.map((t) => [t.name, tensorOf(tf, blob, t)])));
  const out = fs.openSync(job.out, 'w');
  const base = await runAll(tf, model, feeds);
  for (const c of base.chunks) fs.writeSync(out, c);
  for (const probe of job.probes) {
    const replacements = Object.fromEntries(probe.map((t) => [t.name, tensorOf(tf, blob, t)]));
    const restore = model.swap(replacements);
    try {
      for (const c of (await runAll(tf, model, feeds)).chunks) fs.writeSync(out, c);
    } finally {
      restore();
      tf.dispose(Object.values(replacements));
    }
  }
  fs.closeSync(out);
  process.stdout.write(JSON.stringify({ outputs: base.specs, runs: job.probes.length + 1, ms: performance.now() - t0 }) + '\n');
}

try {
  await main();
} catch (err) {
  process.stdout.write(JSON.stringify({ error: String(err && err.message ? err.message : err).replace(/\s+/g, ' ') }) + '\n');
  process.exitCode = 1;
}
