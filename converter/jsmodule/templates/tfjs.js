// ---- TF.js ---------------------------------------------------------------------------------

// backends that live in their own npm package (the @tensorflow/tfjs package has cpu and webgl)
const BACKEND_PACKAGES = { wasm: '@tensorflow/tfjs-backend-wasm', webgpu: '@tensorflow/tfjs-backend-webgpu' };

async function useBackend(backend) {
  if (backend === undefined) return tf.ready().then(() => tf.getBackend());
  const pkg = BACKEND_PACKAGES[backend];
  if (pkg && !tf.findBackendFactory(backend)) {
    try {
      await import(/* @vite-ignore */ pkg);
    } catch (err) {
      throw new Error(`backend '${backend}' needs the npm package ${pkg}@${RUNTIME.version} (${err && err.message})`);
    }
  }
  if (!(await tf.setBackend(backend))) throw new Error(`TF.js backend '${backend}' did not start here`);
  await tf.ready();
  return tf.getBackend();
}

/** A TF.js IOHandler over local files (Node): model.json and its weight shards, read with fs. */
function localFiles(modelJsonPath) {
  const dir = modelJsonPath.replace(/[^/\\]*$/, '');
  return {
    async load() {
      const json = JSON.parse(new TextDecoder().decode(await readLocal(modelJsonPath)));
      return tf.io.getModelArtifactsForJSON(json, async (manifest) => {
        const specs = [];
        const shards = [];
        for (const group of manifest) {
          specs.push(...group.weights);
          for (const p of group.paths) {
            const bytes = await readLocal(dir + p);
            shards.push(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
          }
        }
        return [specs, shards];
      });
    },
  };
}

const RUNTIME_ADAPTER = {
  isTensor: (v) => v instanceof tf.Tensor,
  dtypeOf: (t) => t.dtype,
  shapeOf: (t) => t.shape.slice(),
  // TF.js has no int64: int32 tensors stand for int64 inputs
  tensorDtypes: (dtype) => (dtype === 'int64' ? ['int32'] : [dtype]),
};

/** A loaded model: predict() takes the source's inputs and gives its outputs, in its order. */
class Model {
  constructor(model, backend) {
    this.model = model;
    this.backend = backend;
    this.needsAsync = false;  // execute() warns nothing and is quicker; executeAsync() for control flow
    this.inputs = INPUTS;
    this.outputs = OUTPUTS;
    this.metadata = METADATA;
  }

  async predict(inputs) {
    const feeds = checkInputs(inputs, RUNTIME_ADAPTER);
    const made = [];
    try {
      const named = {};
      INPUTS.forEach((spec, i) => {
        const plan = PLAN.inputs[i];
        const feed = feeds[i];
        let t = feed.tensor;
        if (!t) {
          const data = plan.dtype === 'int32' && feed.dtype !== 'int32' ? toInt32(spec, feed.data) : feed.data;
          t = tf.tensor(data, feed.shape, plan.dtype);
          made.push(t);
        } else if (t.dtype !== plan.dtype) {
          t = tf.cast(t, plan.dtype);
          made.push(t);
        }
        if (plan.perm) {  // the source's layout in, the model's layout (e.g. NHWC) fed
          t = tf.transpose(t, plan.perm);
          made.push(t);
        }
        named[plan.name] = t;
      });
      const got = await this.run(named);
      made.push(...got);
      const out = {};
      for (const [i, spec] of OUTPUTS.entries()) {
        const t = got[i];
        out[spec.name] = { data: await t.data(), shape: t.shape.slice(), dtype: t.dtype };
      }
      return out;
    } finally {
      for (const t of made) t.dispose();
    }
  }

  async run(named) {
    if (PLAN.kind === 'graph-model') {
      const names = PLAN.outputs.map((o) => o.name);
      let out = null;
      if (!this.needsAsync) {
        try {
          out = this.model.execute(named, names);
        } catch (err) {  // control flow or dynamic shapes: TF.js asks for executeAsync (before running anything)
          if (!/executeAsync/.test(String(err && err.message))) throw err;
          this.needsAsync = true;
        }
      }
      if (out === null) out = await this.model.executeAsync(named, names);
      return Array.isArray(out) ? out : [out];
    }
    const model = this.model;
    if (!model.inputNames || !model.inputNames.length) model.build();  // a Sequential model builds lazily
    const given = PLAN.inputs.map((p) => named[p.name]);
    const out = model.predict(model.inputNames.map((n, i) => (n in named ? named[n] : given[i])));
    const list = Array.isArray(out) ? out : [out];
    return PLAN.outputs.map((o, i) => {
      const at = model.outputNames.indexOf(o.name);
      return list[at >= 0 ? at : i];
    });
  }

  dispose() {
    this.model.dispose();
  }
}

/**
 * Load the model: `location` is model.json's URL (browser), or its path or file: URL (Node), or the
 * directory that holds it; by default the model.json beside this module. `backend`: a TF.js
 * backend (wasm, webgl, webgpu, cpu); wasm and webgpu need their npm package installed.
 */
export async function load(location, options = {}) {
  const backend = await useBackend(options.backend);
  const where = resolveFile(location, 'model.json');
  const handler = isRemote(where) ? where : localFiles(where);
  const model = PLAN.kind === 'graph-model' ? await tf.loadGraphModel(handler) : await tf.loadLayersModel(handler);
  return new Model(model, backend);
}
