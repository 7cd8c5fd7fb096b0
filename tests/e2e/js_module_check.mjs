// Drives a generated model.js as an app would: node js_module_check.mjs MODEL_JS REQUEST.json RESULT.json
// REQUEST: {"backend", "location"?, "runtime"? (a module re-exporting the framework, for tensor inputs),
//           "calls": [{"inputs": {NAME: {"kind", "data", "shape"?, "dtype"?}}}]}
// kind: Float32Array | Int32Array | BigInt64Array | Uint8Array | array | shaped (= {data: typed, shape}) | tensor.
// RESULT: the module's constants, the backend, and per call its outputs (names in order) or its error.
import fs from 'node:fs';
import { pathToFileURL } from 'node:url';

const [modelJs, requestPath, resultPath] = process.argv.slice(2);
const req = JSON.parse(fs.readFileSync(requestPath, 'utf8'));
const mod = await import(pathToFileURL(modelJs).href);
const rt = req.runtime ? await import(pathToFileURL(req.runtime).href) : null;

const TYPED = { Float32Array, Int32Array, BigInt64Array, Uint8Array };
function typed(kind, data) {
  return kind === 'BigInt64Array' ? BigInt64Array.from(data, (v) => BigInt(v)) : TYPED[kind].from(data);
}
function make(f) {
  if (f.kind === 'array') return f.shape ? { data: f.data, shape: f.shape } : f.data;
  if (f.kind === 'tensor') {
    return rt.Tensor && rt.InferenceSession ? new rt.Tensor(f.dtype, typed(f.array, f.data), f.shape)
      : rt.tensor(typed(f.array, f.data), f.shape, f.dtype);
  }
  const data = typed(f.kind, f.data);
  return f.shape ? { data, shape: f.shape } : data;
}

const model = await mod.load(req.location, req.backend ? { backend: req.backend } : {});
const results = [];
for (const call of req.calls) {
  const inputs = Object.fromEntries(Object.entries(call.inputs).map(([k, f]) => [k, make(f)]));
  try {
    const out = await model.predict(inputs);
    results.push({
      ok: true,
      names: Object.keys(out),
      outputs: Object.fromEntries(Object.entries(out).map(([k, v]) => [k, {
        shape: v.shape, dtype: v.dtype, array: v.data.constructor.name, data: Array.from(v.data, Number),
      }])),
    });
  } catch (err) {
    results.push({ ok: false, name: err.name, inputError: err instanceof mod.InputError, message: err.message });
  }
}
await model.dispose();
fs.writeFileSync(resultPath, JSON.stringify({
  backend: model.backend, inputs: mod.INPUTS, outputs: mod.OUTPUTS, metadata: mod.METADATA, runtime: mod.RUNTIME, results,
}));
