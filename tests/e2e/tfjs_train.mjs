/**
 * One training step on a TF.js layers model, in real TF.js (Node): proves the model convertkit
 * wrote loads with tf.loadLayersModel and can be trained there.
 *
 *   node tests/e2e/tfjs_train.mjs MODEL_DIR [--backend cpu|wasm]
 *
 * Prints one JSON line: {"loss", "weights", "changed", "trainable", "backend"} where `changed`
 * counts the trainable weights whose values moved after one `trainOnBatch` (SGD, mean squared
 * error against seeded random targets). Errors: {"error": "..."} and exit status 1.
 *
 * Modules come from CONVERTKIT_NODE_MODULES, else converter/formats/tfjs/node/node_modules (the
 * same packages the TfjsRunner uses); the model is read with the runner's own fs IOHandler (fs_handler.mjs).
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fileHandler } from '../../converter/formats/tfjs/node/fs_handler.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const modules = process.env.CONVERTKIT_NODE_MODULES
  ? path.resolve(process.env.CONVERTKIT_NODE_MODULES)
  : path.join(here, '..', '..', 'converter', 'formats', 'tfjs', 'node', 'node_modules');
const require = createRequire(path.join(modules, '_resolve_from_here.cjs'));

// TF.js prints banners on stdout; stdout carries the one JSON result line.
for (const level of ['log', 'info', 'warn']) console[level] = (...a) => process.stderr.write(a.join(' ') + '\n');

/** A seeded pseudo-random generator (mulberry32): the same batch on every run. */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function batch(tf, shapes, dtypes, next, batchSize) {
  return shapes.map((shape, i) => {
    const dims = shape.map((d, j) => (d == null ? (j === 0 ? batchSize : 3) : d));
    const n = dims.reduce((a, b) => a * b, 1);
    if (dtypes[i] === 'int32') return tf.tensor(Int32Array.from({ length: n }, () => Math.floor(next() * 10)), dims, 'int32');
    return tf.tensor(Float32Array.from({ length: n }, () => next() * 2 - 1), dims, 'float32');
  });
}

async function main() {
  const args = process.argv.slice(2);
  const modelDir = args.find((a) => !a.startsWith('--'));
  const backend = args.includes('--backend') ? args[args.indexOf('--backend') + 1] : 'cpu';
  if (!modelDir) throw new Error('usage: tfjs_train.mjs MODEL_DIR [--backend cpu|wasm]');
  const tf = require('@tensorflow/tfjs');
  if (backend === 'wasm') require('@tensorflow/tfjs-backend-wasm');
  if (!(await tf.setBackend(backend))) throw new Error(`backend ${backend} failed to initialise`);
  await tf.ready();

  const model = await tf.loadLayersModel(fileHandler(tf, path.resolve(modelDir)));
  const next = rng(7);
  const xs = batch(tf, model.inputs.map((t) => t.shape), model.inputs.map((t) => t.dtype), next, 4);
  const probe = model.predict(xs.length === 1 ? xs[0] : xs);
  const outs = Array.isArray(probe) ? probe : [probe];
  const ys = outs.map((o) => tf.randomUniform(o.shape, -1, 1, 'float32', 11));
  tf.dispose(outs);

  model.compile({ optimizer: tf.train.sgd(0.1), loss: 'meanSquaredError' });
  const before = model.trainableWeights.map((w) => w.read().dataSync().slice());
  const loss = await model.trainOnBatch(xs.length === 1 ? xs[0] : xs, ys.length === 1 ? ys[0] : ys);
  const after = model.trainableWeights.map((w) => w.read().dataSync());
  const changed = before.filter((b, i) => b.some((v, k) => v !== after[i][k])).length;
  const total = Array.isArray(loss) ? loss[0] : loss;
  process.stdout.write(JSON.stringify({
    loss: total, weights: model.weights.length, trainable: model.trainableWeights.length, changed,
    backend: tf.getBackend(),
  }) + '\n');
}

main().catch((err) => {
  process.stdout.write(JSON.stringify({ error: String(err && err.message ? err.message : err) }) + '\n');
  process.exitCode = 1;
});
