/**
 * The frame protocol that convertkit's Node runners speak with Python over stdin/stdout
 * (run_model.mjs: TF.js; ort_web.mjs: onnxruntime-web). Python's side: converter/formats/nodeproc.py.
 *
 *   frame   = u32 little-endian N | N bytes of UTF-8 JSON header | payload
 *   payload = the raw bytes of each tensor (or blob) the header lists, concatenated in header
 *             order, each `byteLength` long (so the header alone says how many bytes follow)
 *
 * Nothing but frames goes to stdout: quietConsole() sends console output to stderr.
 */
import os from 'node:os';

export class ProtocolError extends Error {}
export class InputError extends Error {}

/** console.* to stderr, each distinct text once, dropping lines that start with one of `noise`. */
export function quietConsole(noise = []) {
  const seen = new Set();
  for (const level of ['log', 'info', 'debug', 'warn', 'error']) {
    console[level] = (...args) => {
      const text = args.map(String).join(' ');
      if (seen.has(text) || noise.some((n) => text.trim().startsWith(n))) return;
      seen.add(text);
      process.stderr.write(text + '\n');
    };
  }
}

export function checkEndianness() {
  if (os.endianness() !== 'LE') throw new Error('the protocol is little-endian; this machine is not');
}

/** Reads exact byte counts from a stream; null at end of stream. */
export class Reader {
  constructor(stream) {
    this.it = stream[Symbol.asyncIterator]();
    this.chunks = [];
    this.length = 0;
  }

  async read(n) {
    while (this.length < n) {
      const { value, done } = await this.it.next();
      if (done) return null;
      this.chunks.push(value);
      this.length += value.length;
    }
    const all = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.length);
    this.chunks = [all.subarray(n)];
    this.length -= n;
    return all.subarray(0, n);
  }
}

export function frame(header, buffers = []) {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32LE(json.length, 0);
  return Buffer.concat([len, json, ...buffers]);
}

export function send(buf) {
  return new Promise((resolve, reject) => {
    process.stdout.write(buf, (err) => (err ? reject(err) : resolve()));
  });
}

export function oneLine(err) {
  const msg = err && err.message ? err.message : String(err);
  return msg.replace(/\s+/g, ' ').trim();
}

/** The next request's JSON header; null when stdin closed between requests. */
export async function readHeader(reader) {
  const lenBuf = await reader.read(4);
  if (lenBuf === null) return null;
  const headerBytes = await reader.read(lenBuf.readUInt32LE(0));
  if (headerBytes === null) throw new ProtocolError('stdin closed inside a request header');
  try {
    return JSON.parse(headerBytes.toString('utf8'));
  } catch (err) {
    throw new ProtocolError(`request header is not JSON: ${oneLine(err)}`);
  }
}

/** The payload of the `items` a header lists (each with a byteLength), read in one piece. */
export async function readPayload(reader, items) {
  let total = 0;
  for (const s of items) {
    if (!Number.isSafeInteger(s.byteLength) || s.byteLength < 0) {
      throw new ProtocolError(`${s.name !== undefined ? 'input' : 'item'} '${s.name ?? s.key}' has no valid byteLength`);
    }
    total += s.byteLength;
  }
  const payload = await reader.read(total);
  if (payload === null) throw new ProtocolError('stdin closed inside a request payload');
  return payload;
}

/** The payload cut into one fresh ArrayBuffer per item (copied: a slice need not be aligned). */
export function split(payload, items) {
  const out = [];
  let offset = 0;
  for (const s of items) {
    const bytes = payload.subarray(offset, offset + s.byteLength);
    offset += s.byteLength;
    out.push(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  }
  return out;
}
