// An image classifier in a web page, through the typed module convertkit writes beside the model
// (model/model.js): load() once, predict() with the source model's input names, shapes and layout.
//
//   ?backend=webgl|wasm|cpu   TF.js backend (default webgl; an ONNX model runs on onnxruntime-web wasm)
//   ?input=URL                classify a raw little-endian float32 tensor in the model's input shape
//                             instead of an image (what convertkit's test does, to compare with Python)
//
// When done, window.result = {backend, index, label, logits, probabilities} (or {error}).
import { load, INPUTS, OUTPUTS, METADATA, RUNTIME } from './model/model.js';

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const input = INPUTS[0];   // an image classifier takes one image tensor: [batch, 3, H, W] (NCHW) or NHWC
const output = OUTPUTS[0];  // and returns one row of class scores per image

const nchw = input.shape[1] === 3 || input.shape[1] === 1;
const [height, width] = nchw ? input.shape.slice(2, 4) : input.shape.slice(1, 3);
const channels = nchw ? input.shape[1] : input.shape[3];

/** RGBA pixels -> float32 in [0, 1], in the layout the model was trained with. Match your training's
 *  preprocessing here (mean/std normalisation, BGR, ...): the model does not know how it was fed. */
function toTensor(rgba) {
  const n = height * width;
  const data = new Float32Array(channels * n);
  for (let p = 0; p < n; p++) {
    for (let c = 0; c < channels; c++) {
      data[nchw ? c * n + p : p * channels + c] = rgba[p * 4 + c] / 255;
    }
  }
  return { data, shape: nchw ? [1, channels, height, width] : [1, height, width, channels] };
}

function drawSample(ctx) {
  const g = ctx.createLinearGradient(0, 0, width, height);
  g.addColorStop(0, '#1e88e5');
  g.addColorStop(1, '#fdd835');
  ctx.fillStyle = g;
  ctx.fillRect(0, 0, width, height);
  ctx.fillStyle = '#d81b60';
  ctx.beginPath();
  ctx.arc(width / 2, height / 2, width / 4, 0, 2 * Math.PI);
  ctx.fill();
}

const softmax = (logits) => {
  const max = Math.max(...logits);
  const e = logits.map((v) => Math.exp(v - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / sum);
};

async function labels() {
  try {
    const res = await fetch('./model/labels.json');  // optional: ["cat", "dog", ...]
    return res.ok ? await res.json() : null;
  } catch {
    return null;
  }
}

async function classify(model, names, feed) {
  const out = await model.predict({ [input.name]: feed });
  const logits = Array.from(out[output.name].data);
  const probabilities = softmax(logits);
  const order = probabilities.map((p, i) => [p, i]).sort((a, b) => b[0] - a[0]);
  const name = (i) => (names && names[i]) || `class ${i}`;
  $('top').innerHTML = '';
  for (const [p, i] of order.slice(0, 3)) {
    const li = document.createElement('li');
    li.textContent = `${name(i)}: ${(100 * p).toFixed(1)}%`;
    $('top').append(li);
  }
  const index = order[0][1];
  $('status').textContent = `top-1: ${name(index)} (${model.backend})`;
  return { backend: model.backend, index, label: name(index), logits, probabilities };
}

async function main() {
  const isOnnx = RUNTIME.package === 'onnxruntime-web';
  const backend = params.get('backend') || (isOnnx ? 'wasm' : 'webgl');
  if (!isOnnx && backend === 'wasm') {
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    wasm.setWasmPaths(new URL('./node_modules/@tensorflow/tfjs-backend-wasm/dist/', location.href).href);
  }
  const model = await load(undefined, { backend });  // the model beside model.js
  const names = await labels();
  $('card').textContent = `${METADATA.source.name} (${METADATA.source.format}) -> ${METADATA.target.kind}, ` +
    `convertkit ${METADATA.convertkit}, parity ${METADATA.parity?.verdict ?? 'not checked'}, licence ${METADATA.license}`;
  const canvas = $('preview');
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  const fromCanvas = () => classify(model, names, toTensor(ctx.getImageData(0, 0, width, height).data));

  $('sample').onclick = () => { drawSample(ctx); fromCanvas(); };
  $('file').onchange = async (ev) => {
    const file = ev.target.files[0];
    if (!file) return;
    const bitmap = await createImageBitmap(file);
    ctx.drawImage(bitmap, 0, 0, width, height);
    fromCanvas();
  };
  if (params.get('input')) {
    const data = new Float32Array(await (await fetch(params.get('input'))).arrayBuffer());
    const shape = input.shape.map((d) => (typeof d === 'number' ? d : 1));
    return classify(model, names, { data, shape });
  }
  drawSample(ctx);
  return fromCanvas();
}

main().then((result) => { window.result = result; }, (err) => {
  $('status').textContent = `error: ${err.message}`;
  $('status').className = 'error';
  window.result = { error: `${err.name}: ${err.message}` };
});
