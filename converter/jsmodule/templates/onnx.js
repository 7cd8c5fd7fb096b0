// ---- onnxruntime-web -------------------------------------------------------------------------

const RUNTIME_ADAPTER = {
  isTensor: (v) => v instanceof ort.Tensor,
  dtypeOf: (t) => t.type,
  shapeOf: (t) => Array.from(t.dims),
  tensorDtypes: (dtype) => [dtype],
};

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
      if (feed.tensor && !plan.perm) {
        named[plan.name] = feed.tensor;
        return;
      }
      let data = feed.tensor ? feed.tensor.data : feed.data;
      let shape = feed.shape;
      if (plan.dtype === 'int64' && !(data instanceof BigInt64Array)) data = BigInt64Array.from(data, (v) => BigInt(v));
      if (plan.perm) ({ data, shape } = transpose(data, shape, plan.perm));
      named[plan.name] = new ort.Tensor(plan.dtype, data, shape);
    });
    const got = await this.model.run(named);
    const out = {};
    OUTPUTS.forEach((spec, i) => {
      const t = got[PLAN.outputs[i].name];
      out[spec.name] = { data: t.data, shape: Array.from(t.dims), dtype: t.type };
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
