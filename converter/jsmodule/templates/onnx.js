// ---- onnxruntime-web -------------------------------------------------------------------------

const RUNTIME_ADAPTER = {
  isTensor: (v) => v instanceof ort.Tensor,
  dtypeOf: (t) => t.type,
  shapeOf: (t) => Array.from(t.dims),
  tensorDtypes: (dtype) => [dtype],
};

// float16 models whose source takes float32 (-p fp16:keep_io_types=false): the module converts at the
// edges, so an app feeds and reads float32 either way. Round to nearest even, as numpy's astype.
const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

function toHalf(v) {
  F32[0] = v;
  const x = U32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 112;  // rebias 127 -> 15
  if (e >= 0x1f) return sign | 0x7c00;
  let shift = 13;
  let base = e << 10;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    shift = 14 - e;
    base = 0;
  }
  let h = base | (mant >>> shift);
  const rem = mant & ((1 << shift) - 1);
  const halfway = 1 << (shift - 1);
  if (rem > halfway || (rem === halfway && (h & 1))) h += 1;
  return sign | h;
}

function fromHalf(h) {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

const halves = (data) => Uint16Array.from(data, toHalf);
const floats = (data) => (data instanceof Uint16Array ? Float32Array.from(data, fromHalf) : Float32Array.from(data));

/** Transpose a C-order array of `shape` by `perm` (the model's layout differs from the source's). */
function transpose(data, shape, perm) {
  const rank = shape.length;
  const outShape = perm.map((p) => shape[p]);
  const strides = new Array(rank).fill(1);
  for (let i = rank - 2; i >= 0; i--) strides[i] = strides[i + 1] * shape[i + 1];
  const out = new data.constructor(data.length);
  const idx = new Array(rank).fill(0);
  for (let o = 0; o < data.length; o++) {
    let src = 0;
    for (let k = 0; k < rank; k++) src += idx[k] * strides[perm[k]];
    out[o] = data[src];
    for (let k = rank - 1; k >= 0; k--) {
      if (++idx[k] < outShape[k]) break;
      idx[k] = 0;
    }
  }
  return { data: out, shape: outShape };
}

/** A loaded model: predict() takes the source's inputs and gives its outputs, in its order. */
class Model {
  constructor(session, backend) {
    this.model = session;
    this.backend = backend;
    this.inputs = INPUTS;
    this.outputs = OUTPUTS;
    this.metadata = METADATA;
  }

  async predict(inputs) {
    const feeds = checkInputs(inputs, RUNTIME_ADAPTER);
    const named = {};
    INPUTS.forEach((spec, i) => {
      const plan = PLAN.inputs[i];
      const feed = feeds[i];
      if (feed.tensor && !plan.perm && feed.dtype === plan.dtype) {
        named[plan.name] = feed.tensor;
        return;
      }
      let data = feed.tensor ? feed.tensor.data : feed.data;
      let shape = feed.shape;
      if (plan.dtype === 'int64' && !(data instanceof BigInt64Array)) data = BigInt64Array.from(data, (v) => BigInt(v));
      if (plan.dtype === 'float16' && spec.dtype !== 'float16') data = halves(data);
      if (plan.perm) ({ data, shape } = transpose(data, shape, plan.perm));
      named[plan.name] = new ort.Tensor(plan.dtype, data, shape);
    });
    const got = await this.model.run(named);
    const out = {};
    OUTPUTS.forEach((spec, i) => {
      const t = got[PLAN.outputs[i].name];
      const widen = t.type === 'float16' && spec.dtype === 'float32';
      out[spec.name] = { data: widen ? floats(t.data) : t.data, shape: Array.from(t.dims), dtype: widen ? 'float32' : t.type };
    });
    return out;
  }

  dispose() {
    return this.model.release();
  }
}

/**
 * Load the model: `location` is model.onnx's URL (browser), or its path or file: URL (Node), or
 * the directory that holds it; by default the model.onnx beside this module. `backend`: the
 * onnxruntime-web execution provider (wasm, webgpu, webgl, webnn; default wasm), or give
 * `executionProviders` (a list) and any other session options in `sessionOptions`.
 */
export async function load(location, options = {}) {
  const providers = options.executionProviders || [options.backend || 'wasm'];
  const where = resolveFile(location, 'model.onnx');
  const remote = isRemote(where);
  const model = remote ? where : await readLocal(where);
  const sessionOptions = { ...(options.sessionOptions || {}), executionProviders: providers };
  if (PLAN.externalData) {
    const dataAt = where.replace(/[^/\\]*$/, '') + PLAN.externalData;
    sessionOptions.externalData = [{ path: PLAN.externalData, data: remote ? dataAt : await readLocal(dataAt) }];
  }
  const session = await ort.InferenceSession.create(model, sessionOptions);
  return new Model(session, providers.map((p) => (typeof p === 'string' ? p : p.name)).join(','));
}
