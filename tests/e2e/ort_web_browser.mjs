/**
 * Runs an ONNX model with convertkit's ort_web_core.mjs inside headless Chromium (Debian's
 * `chromium`, driven by playwright-core; no browser download): the module the Node runner uses,
 * unchanged, in a page. It proves the JS side of the onnxruntime-web runner is browser-ready (#16).
 *
 *   node tests/e2e/ort_web_browser.mjs MODEL.onnx INPUT_NAME SHAPE(comma) FEED.f32
 *
 * Serves the page, onnxruntime-web's dist/ and ort_web_core.mjs from 127.0.0.1 (an ephemeral port)
 * and prints {"outputs": [{"name", "dtype", "shape", "data": [...]}], "backend": "wasm"} as one JSON
 * line, or {"error": "..."} with exit status 1.
 */
import { createRequire } from 'node:module';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const nodeDir = path.join(here, '..', '..', 'converter', 'formats', 'tfjs', 'node');
const modules = process.env.CONVERTKIT_NODE_MODULES ? path.resolve(process.env.CONVERTKIT_NODE_MODULES)
  : path.join(nodeDir, 'node_modules');
const require = createRequire(path.join(modules, '_resolve_from_here.cjs'));
const TYPES = { '.mjs': 'text/javascript', '.js': 'text/javascript', '.wasm': 'application/wasm', '.html': 'text/html' };

const PAGE = `<!doctype html><script type="module">
import * as ort from '/ort/ort.bundle.min.mjs';
import { configure, createSession, runSession } from '/core/ort_web_core.mjs';
try {
  configure(ort, { numThreads: 1 });
  const bytes = new Uint8Array(await (await fetch('/model.onnx')).arrayBuffer());
  const feed = new Float32Array(await (await fetch('/feed.f32')).arrayBuffer());
  const spec = await (await fetch('/spec.json')).json();
  const { session } = await createSession(ort, bytes);
  const outs = await runSession(ort, session, { [spec.name]: { dtype: 'float32', shape: spec.shape, data: feed } });
  window.result = { outputs: outs.map((o) => ({ name: o.name, dtype: o.dtype, shape: o.shape, data: Array.from(o.data) })) };
} catch (err) { window.result = { error: String(err && err.message || err) }; }
</script>`;

function serve(files) {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    let body = null;
    if (url.pathname === '/') body = PAGE;
    else if (url.pathname in files) body = files[url.pathname];
    else if (url.pathname.startsWith('/ort/')) body = path.join(modules, 'onnxruntime-web', 'dist', path.basename(url.pathname));
    else if (url.pathname === '/core/ort_web_core.mjs') body = path.join(nodeDir, 'ort_web_core.mjs');
    const file = typeof body === 'string' && body !== PAGE ? body : null;
    if (body === null || (file && !fs.existsSync(file))) { res.writeHead(404); res.end(); return; }
    res.writeHead(200, { 'Content-Type': TYPES[path.extname(url.pathname)] || (url.pathname === '/' ? 'text/html' : 'application/octet-stream') });
    res.end(file ? fs.readFileSync(file) : body);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

async function main([model, name, shape, feed]) {
  const spec = Buffer.from(JSON.stringify({ name, shape: shape.split(',').map(Number) }));
  const server = await serve({ '/model.onnx': path.resolve(model), '/feed.f32': path.resolve(feed), '/spec.json': spec });
  const { chromium } = require('playwright-core');
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'convertkit-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CONVERTKIT_CHROMIUM || '/usr/bin/chromium', headless: true, timeout: 60000,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  });
  try {
    const tab = context.pages()[0] || await context.newPage();
    await tab.goto(`http://127.0.0.1:${server.address().port}/`);
    await tab.waitForFunction(() => window.result !== undefined, null, { timeout: 60000 });
    return await tab.evaluate(() => window.result);
  } finally {
    await context.close();
    server.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

try {
  const result = await main(process.argv.slice(2));
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exitCode = result.error ? 1 : 0;
} catch (err) {
  process.stdout.write(JSON.stringify({ error: String(err && err.message || err) }) + '\n');
  process.exitCode = 1;
}
