/**
 * onnxruntime-web for convertkit, with nothing Node-specific: the same module runs in a browser
 * page. Callers hand in the `ort` module (import 'onnxruntime-web'), model bytes and feeds; file
 * and stdin I/O live in the Node wrapper (ort_web.mjs).
 *
 *   configure(ort, {numThreads})                 wasm EP settings, before the first session
 *   await createSession(ort, bytes, {externalData}) -> {session, inputs, outputs}
 *   await probeKernels(ort, [{key, bytes}])      -> [{key, ok, missing, error}]
 *   await runSession(ort, session, feeds)         -> [{name, dtype, shape, data}]
 *
 * feeds: {name: {dtype, shape, data}} where data is the dtype's typed array (TYPED below).
 */

/** wire dtype -> typed array onnxruntime-web takes for it (float16 travels as its uint16 bits). */
export const TYPED = {
  float32: Float32Array, float64: Float64Array, float16: Uint16Array,
  int8: Int8Array, uint8: Uint8Array, int16: Int16Array, uint16: Uint16Array,
  int32: Int32Array, uint32: Uint32Array, int64: BigInt64Array, uint64: BigUint64Array,
  bool: Uint8Array,
};

/** An ORT error that means "this build has no kernel (or no schema) for an op". */
export const NO_KERNEL = /Could not find an implementation for|No Op registered for|is not a registered function\/op/;

export function configure(ort, { numThreads = 1, logLevel = 'error' } = {}) {
  ort.env.wasm.numThreads = numThreads;  // 1: no worker threads, deterministic timing on a shared CPU
  ort.env.logLevel = logLevel;
}

const dims = (shape) => (shape ? shape.map((d) => (typeof d === 'number' && d >= 0 ? d : null)) : null);

export async function createSession(ort, bytes, { externalData, optimization = 'all' } = {}) {
  const options = { executionProviders: ['wasm'], graphOptimizationLevel: optimization };
  if (externalData && externalData.length) options.externalData = externalData;  // [{path, data}]
  const session = await ort.InferenceSession.create(bytes, options);
  const spec = (m) => ({ name: m.name, dtype: m.isTensor ? m.type : null, shape: m.isTensor ? dims(m.shape) : null });
  const meta = (names, list) => names.map((n, i) => (list && list[i] ? spec(list[i]) : { name: n, dtype: null, shape: null }));
  return { session, inputs: meta(session.inputNames, session.inputMetadata),
    outputs: meta(session.outputNames, session.outputMetadata) };
}

/** Whether each one-node model opens: `missing` when ORT says it has no kernel for its op. */
export async function probeKernels(ort, models) {
  const out = [];
  for (const { key, bytes } of models) {
    try {
      const { session } = await createSession(ort, bytes, { optimization: 'disabled' });
      await session.release();
      out.push({ key, ok: true, missing: false, error: null });
    } catch (err) {
      const error = (err && err.message ? err.message : String(err)).replace(/\s+/g, ' ').trim();
      out.push({ key, ok: false, missing: NO_KERNEL.test(error), error });
    }
  }
  return out;
}

export async function runSession(ort, session, feeds) {
  const tensors = {};
  for (const [name, f] of Object.entries(feeds)) tensors[name] = new ort.Tensor(f.dtype, f.data, f.shape);
  const results = await session.run(tensors);
  const out = [];
  for (const name of session.outputNames) {
    const t = results[name];
    if (!t) throw new Error(`onnxruntime-web returned no output '${name}'`);
    if (!(t.type in TYPED)) throw new Error(`output '${name}' has dtype ${t.type}, which convertkit cannot read back`);
    let data = t.location === 'cpu' || !t.location ? t.data : await t.getData();
    out.push({ name, dtype: t.type, shape: [...t.dims], data });
  }
  for (const t of Object.values(results)) t.dispose?.();
  return out;
}
