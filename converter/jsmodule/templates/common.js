// ---- input checks (the same in every generated module) ---------------------------------------

/** Thrown by predict() for inputs that do not fit the model; the message names the input and the fix. */
export class InputError extends Error {
  constructor(message) {
    super(message);
    this.name = 'InputError';
  }
}

// the typed arrays predict() takes for each source dtype (int64: Int32Array too, the ids most apps have)
const ARRAYS = {
  float32: ['Float32Array'], float64: ['Float64Array'], float16: ['Uint16Array', 'Float16Array'],
  int8: ['Int8Array'], int16: ['Int16Array'], int32: ['Int32Array'], int64: ['BigInt64Array', 'Int32Array'],
  uint8: ['Uint8Array'], uint16: ['Uint16Array'], uint32: ['Uint32Array'], uint64: ['BigUint64Array'],
  bool: ['Uint8Array'],
};
// a plain array is copied into this one
const MAKE = {
  float32: Float32Array, float64: Float64Array, int8: Int8Array, int16: Int16Array, int32: Int32Array,
  int64: BigInt64Array, uint8: Uint8Array, uint16: Uint16Array, uint32: Uint32Array, uint64: BigUint64Array,
  bool: Uint8Array,
};

const quote = (name) => JSON.stringify(name);
const dimsText = (dims) => `[${dims.map((d) => (d === null ? '?' : String(d))).join(',')}]`;
const nameList = () => INPUTS.map((s) => quote(s.name)).join(', ');
const kindOf = (v) => (v === null || v === undefined ? String(v) : Array.isArray(v) ? 'an Array'
  : ArrayBuffer.isView(v) || typeof v === 'object' ? (v.constructor && v.constructor.name) || 'an object' : typeof v);
// convertkit names a TF model's unknown dims d1, d2, ... per input: those do not tie two inputs together
const TIES = (dim) => typeof dim === 'string' && !/^d\d+$/.test(dim);

function expected(spec) {
  return `${spec.dtype} data (${[...ARRAYS[spec.dtype] || [], spec.dtype === 'bool' ? 'boolean[]' : 'number[]'].join(', ')})`;
}

function fromArray(spec, arr) {
  const Make = MAKE[spec.dtype];
  if (!Make) throw new InputError(`input ${quote(spec.name)}: give ${spec.dtype} data as a ${ARRAYS[spec.dtype].join(' or ')}`);
  for (let i = 0; i < arr.length; i++) {
    const v = arr[i];
    const ok = spec.dtype === 'bool' ? typeof v === 'boolean' || v === 0 || v === 1
      : typeof v === 'bigint' ? /int/.test(spec.dtype)
        : typeof v === 'number' && (spec.dtype.startsWith('float') || Number.isInteger(v));
    if (!ok) throw new InputError(`input ${quote(spec.name)}: element ${i} is ${typeof v === 'number' ? v : typeof v}, expected ${expected(spec)}`);
  }
  if (spec.dtype.endsWith('int64')) return Make.from(arr, (v) => BigInt(v));
  return Make.from(arr, (v) => (typeof v === 'bigint' ? Number(v) : Number(v)));
}

function inferShape(spec, length) {
  if (spec.shape === null) throw new InputError(`input ${quote(spec.name)}: its rank is unknown: give {data, shape}`);
  const dynamic = spec.shape.filter((d) => typeof d !== 'number');
  if (dynamic.length === 0) return spec.shape.slice();
  const known = spec.shape.reduce((n, d) => (typeof d === 'number' ? n * d : n), 1);
  if (dynamic.length > 1 || known === 0 || length % known !== 0) {
    throw new InputError(`input ${quote(spec.name)}: ${dimsText(spec.shape)} has dynamic dims (${dynamic.join(', ')}): give {data, shape}`);
  }
  return spec.shape.map((d) => (typeof d === 'number' ? d : length / known));
}

/** One input as {data, shape, dtype} (or {tensor, shape, dtype}), its dtype and shape checked against spec. */
function unpack(spec, value, runtime) {
  if (runtime.isTensor(value)) {
    const dtype = runtime.dtypeOf(value);
    if (!runtime.tensorDtypes(spec.dtype).includes(dtype)) {
      throw new InputError(`input ${quote(spec.name)}: a ${dtype} tensor, the model takes ${spec.dtype}`);
    }
    return { tensor: value, shape: runtime.shapeOf(value), dtype };
  }
  const shaped = value !== null && typeof value === 'object' && !Array.isArray(value) && !ArrayBuffer.isView(value)
    && 'data' in value;
  let data = shaped ? value.data : value;
  if (Array.isArray(data)) data = fromArray(spec, data);
  else if (!ArrayBuffer.isView(data) || !(ARRAYS[spec.dtype] || []).includes(data.constructor.name)) {
    throw new InputError(`input ${quote(spec.name)}: expected ${expected(spec)}, got ${kindOf(data)}`);
  }
  const shape = shaped ? Array.from(value.shape || [], Number) : inferShape(spec, data.length);
  const size = shape.reduce((n, d) => n * d, 1);
  if (shaped && (!Array.isArray(value.shape) && !ArrayBuffer.isView(value.shape) || shape.some((d) => !Number.isInteger(d) || d < 0))) {
    throw new InputError(`input ${quote(spec.name)}: shape must be a list of sizes, got ${JSON.stringify(value.shape)}`);
  }
  if (size !== data.length) {
    throw new InputError(`input ${quote(spec.name)}: ${data.length} values do not fill shape ${dimsText(shape)} (${size} values)`);
  }
  return { data, shape, dtype: data.constructor === BigInt64Array ? 'int64' : spec.dtype };
}

function checkShape(spec, shape, sizes) {
  if (spec.shape === null) return;
  if (shape.length !== spec.shape.length) {
    throw new InputError(`input ${quote(spec.name)}: shape ${dimsText(shape)} has rank ${shape.length}, the model takes rank ${spec.shape.length} ${dimsText(spec.shape)}`);
  }
  spec.shape.forEach((want, i) => {
    if (typeof want === 'number' && shape[i] !== want) {
      throw new InputError(`input ${quote(spec.name)}: shape ${dimsText(shape)} does not fit ${dimsText(spec.shape)}: dim ${i} must be ${want}`);
    }
    if (TIES(want)) {
      const seen = sizes.get(want);
      if (seen && seen.size !== shape[i]) {
        throw new InputError(`input ${quote(spec.name)}: dim ${i} (${want}) is ${shape[i]}, but input ${quote(seen.input)} has ${want} = ${seen.size}`);
      }
      if (!seen) sizes.set(want, { size: shape[i], input: spec.name });
    }
  });
}

/** Every input of INPUTS, checked, in INPUTS order. */
function checkInputs(inputs, runtime) {
  if (inputs === null || typeof inputs !== 'object' || Array.isArray(inputs)) {
    throw new InputError(`predict() takes an object with the inputs ${nameList()}, got ${kindOf(inputs)}`);
  }
  const unknown = Object.keys(inputs).filter((k) => !INPUTS.some((s) => s.name === k));
  if (unknown.length) {
    throw new InputError(`unknown input ${unknown.map(quote).join(', ')}: the model takes ${nameList()}`);
  }
  const sizes = new Map();
  return INPUTS.map((spec) => {
    if (!(spec.name in inputs)) throw new InputError(`input ${quote(spec.name)} is missing: the model takes ${nameList()}`);
    const feed = unpack(spec, inputs[spec.name], runtime);
    checkShape(spec, feed.shape, sizes);
    return feed;
  });
}

/** Int32Array from int64 ids (TF.js has no int64); a value outside int32 is an InputError, not a wrap. */
function toInt32(spec, data) {
  if (data instanceof Int32Array) return data;
  const out = new Int32Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (v > 2147483647n || v < -2147483648n) {
      throw new InputError(`input ${quote(spec.name)}: element ${i} (${v}) does not fit int32, which the model takes`);
    }
    out[i] = Number(v);
  }
  return out;
}

// ---- where the model is: a URL in a browser, a path or file: URL in Node ---------------------

const IN_NODE = typeof process !== 'undefined' && process.versions != null && process.versions.node != null;

function isRemote(location) {
  const text = String(location);
  return /^(https?|blob|data):/i.test(text) || (!IN_NODE && !/^file:/i.test(text));
}

// Node built-ins by a computed name: bundlers for the browser then leave them alone
async function nodeModule(name) {
  return import(/* @vite-ignore */ /* webpackIgnore: true */ `node:${name}`);
}

/** Node: the bytes of a local file given as a path or a file: URL. */
async function readLocal(location) {
  const fs = await nodeModule('fs/promises');
  const url = await nodeModule('url');
  const text = String(location);
  const path = /^file:/i.test(text) ? url.fileURLToPath(text) : text;
  const buf = await fs.readFile(path);
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

function resolveFile(location, file) {
  const text = String(location ?? new URL(file, import.meta.url));
  return text.endsWith(`/${file}`) || text === file || text.endsWith(`\\${file}`) || /\.(json|onnx)$/i.test(text) ? text
    : `${text.replace(/[/\\]+$/, '')}/${file}`;
}
