// normd.mjs - a client for the normd HTTP service: every /v1 route and the Open Inference
// Protocol (KServe V2) infer, for Node 18+ and browsers, on fetch. No dependencies.
//
// Tensors: a Float32Array (or any typed array) travels as little-endian float32 bytes with its
// shape, { data, shape } ("a tensor"); nested arrays travel as JSON and come back as nested arrays.
// Errors throw NormdError { status, code, field, message, requestId }.

const JSON_TYPE = 'application/json';
const BINARY_TYPE = 'application/octet-stream';
const IDEMPOTENT = new Set(['GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS']);
const LITTLE = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** Every error of the client. A reply's error carries normd's status, code, field, message and
 * requestId (OIP routes give only a message); a transport failure has status 0 and code
 * "connection_error" or "timeout", with `sent` telling whether the request may have arrived. */
export class NormdError extends Error {
  constructor(status, code, message, field = null, requestId = null, body = null) {
    super(`${status}${code ? ' ' + code : ''}: ${message}${field ? ` (field ${field})` : ''}` +
          (requestId ? ` [request ${requestId}]` : ''));
    this.name = 'NormdError';
    this.status = status;
    this.code = code;
    this.field = field;
    this.requestId = requestId;
    this.body = body;
    Object.defineProperty(this, 'message', { value: message, enumerable: true });
  }
}

/** A tensor: { data: Float32Array, shape: number[] }. */
export function tensor(data, shape) {
  const f = data instanceof Float32Array ? data : Float32Array.from(data);
  const n = shape.reduce((a, b) => a * b, 1);
  if (n !== f.length) throw new RangeError(`shape [${shape}] needs ${n} values, got ${f.length}`);
  return { data: f, shape: shape.map(Number) };
}

/** A typed array or { data, shape }: the tensor it stands for, or null for JSON values. */
function asTensor(x, shape) {
  if (ArrayBuffer.isView(x) && !(x instanceof DataView)) return tensor(x, shape || [x.length]);
  if (x && typeof x === 'object' && ArrayBuffer.isView(x.data) && Array.isArray(x.shape))
    return tensor(x.data, x.shape);
  return null;
}

function leBytes(f32) {
  if (LITTLE) return new Uint8Array(f32.buffer, f32.byteOffset, f32.byteLength);
  const out = new Uint8Array(f32.length * 4);
  const dv = new DataView(out.buffer);
  f32.forEach((v, i) => dv.setFloat32(i * 4, v, true));
  return out;
}

function fromLe(bytes, shape, dtype = 'FP32') {
  const size = dtype === 'FP64' ? 8 : dtype === 'FP16' ? 2 : 4;
  const n = bytes.byteLength / size;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    out[i] = size === 4 ? dv.getFloat32(i * 4, true) : size === 8 ? dv.getFloat64(i * 8, true)
      : half(dv.getUint16(i * 2, true));
  }
  return { data: out, shape };
}

function half(h) {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

function b64encode(bytes) {
  if (typeof Buffer !== 'undefined') return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function b64decode(text) {
  if (typeof Buffer !== 'undefined') return new Uint8Array(Buffer.from(text, 'base64'));
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/** A tensor as normd's base64 JSON form (exact float32). */
function b64Form(t) {
  return { shape: t.shape, datatype: 'FP32', b64: b64encode(leBytes(t.data)) };
}

/** JSON.stringify with tensors (typed arrays, { data, shape }) as base64 forms. */
function toJson(body) {
  return JSON.stringify(body, (k, v) => {
    const t = v && typeof v === 'object' ? asTensor(v) : null;
    return t ? b64Form(t) : v;
  });
}

/** Replaces every base64 tensor form of a reply by a tensor. */
function decodeB64(obj) {
  if (Array.isArray(obj)) return obj.map(decodeB64);
  if (obj && typeof obj === 'object') {
    if (typeof obj.b64 === 'string' && Array.isArray(obj.shape))
      return fromLe(b64decode(obj.b64), obj.shape, String(obj.datatype || 'FP32').toUpperCase());
    return Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, decodeB64(v)]));
  }
  return obj;
}

function nest(flat, shape) {
  if (shape.length === 0) return flat[0];
  if (shape.length === 1) return Array.from(flat);
  const step = shape[0] ? flat.length / shape[0] : 0;
  const out = [];
  for (let i = 0; i < shape[0]; i++) out.push(nest(flat.slice(i * step, (i + 1) * step), shape.slice(1)));
  return out;
}

function listShape(x) {
  const shape = [];
  while (Array.isArray(x)) { shape.push(x.length); if (!x.length) break; x = x[0]; }
  return shape;
}

function parseShape(h) {
  return h && h.trim() ? h.split(',').map((d) => parseInt(d, 10)) : [];
}

function etagVersion(h) {
  const m = /(\d+)/.exec(h || '');
  return m ? Number(m[1]) : null;
}

function ifMatch(v) {
  if (v === undefined || v === null) return {};
  return { 'If-Match': typeof v === 'string' ? v : `"${v}"` };
}

const seg = encodeURIComponent;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The answer of an OIP infer: outputs (name -> value, in order), output (the first),
 * modelName, modelVersion, id, parameters, response (the JSON part). */
export class InferResult {
  constructor(response, outputs) {
    this.response = response;
    this.outputs = outputs;
    this.modelName = response.model_name;
    this.modelVersion = response.model_version;
    this.id = response.id;
    this.parameters = response.parameters || {};
  }
  get output() { const v = Object.values(this.outputs); return v.length ? v[0] : undefined; }
}

/** A normd client.
 *   const c = new Client({ baseUrl: 'http://127.0.0.1:8080', apiKey, timeoutMs: 30000, retries: 2 });
 * GET, HEAD, PUT and DELETE are retried up to `retries` times after a network error or a 503
 * (backoff `backoffMs`, doubling); POST only when the connection was refused (nothing sent). Connections are reused by fetch's keep-alive. */
export class Client {
  constructor({ baseUrl = 'http://127.0.0.1:8080', apiKey = null, timeoutMs = 30000, retries = 2,
    backoffMs = 50, headers = {}, fetch: fetchImpl = globalThis.fetch } = {}) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.timeoutMs = timeoutMs;
    this.retries = Math.max(0, retries | 0);
    this.backoffMs = backoffMs;
    this.headers = { ...headers };
    if (apiKey) this.headers.Authorization = `Bearer ${apiKey}`;
    this.fetch = fetchImpl;
    this.oipInputs = new Map();
  }

  // ---- plumbing ----

  /** One exchange: { status, headers, body: Uint8Array }; throws NormdError outside `ok`. */
  async request(method, path, { query, body, headers, ok = (s) => s >= 200 && s < 300 } = {}) {
    const q = query ? Object.entries(query).filter(([, v]) => v !== undefined && v !== null) : [];
    const url = this.baseUrl + path + (q.length ? '?' + new URLSearchParams(q.map(([k, v]) => [k, String(v)])) : '');
    const h = { ...this.headers, ...headers };
    const idempotent = IDEMPOTENT.has(method);
    for (let attempt = 0; ; attempt++) {
      let res;
      const ctl = new AbortController();
      const timer = setTimeout(() => ctl.abort(), this.timeoutMs);
      try {
        res = await this.fetch(url, { method, headers: h, body, signal: ctl.signal });
        const buf = new Uint8Array(await res.arrayBuffer());
        clearTimeout(timer);
        if (res.status === 503 && idempotent && attempt < this.retries) {
          const ra = Math.min(parseFloat(res.headers.get('retry-after')) || 0, 1);
          await sleep(ra ? ra * 1000 : this.backoffMs * 2 ** attempt);
          continue;
        }
        const reply = { status: res.status, headers: res.headers, body: buf };
        if (!(Array.isArray(ok) ? ok.includes(res.status) : ok(res.status))) throw errorFromReply(reply);
        return reply;
      } catch (e) {
        clearTimeout(timer);
        if (e instanceof NormdError) throw e;
        const timeout = ctl.signal.aborted;
        // refused or unresolved: nothing was sent, so any method may go again
        const notSent = ['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN'].includes(e.cause?.code);
        if ((idempotent || notSent) && attempt < this.retries && !timeout) {
          await sleep(this.backoffMs * 2 ** attempt);
          continue;
        }
        const err = new NormdError(0, timeout ? 'timeout' : 'connection_error',
          `${method} ${path}: ${timeout ? `no answer within ${this.timeoutMs} ms` : `no answer from ${this.baseUrl}: ${e.cause?.message || e.message}`}`);
        err.sent = !notSent; // beyond a refused connection fetch cannot tell: POST is not resent
        err.cause = e;
        throw err;
      }
    }
  }

  async json(method, path, body, { query, headers, ok = [200] } = {}) {
    const h = { Accept: JSON_TYPE, ...headers };
    let data;
    if (body !== undefined) { data = toJson(body); h['Content-Type'] = JSON_TYPE; }
    const r = await this.request(method, path, { query, body: data, headers: h, ok });
    return r.body.length ? JSON.parse(new TextDecoder().decode(r.body)) : null;
  }

  // ---- health, metrics, server ----

  health() { return this.json('GET', '/healthz'); }
  ready() { return this.json('GET', '/readyz'); }
  async isReady() {
    try { await this.request('GET', '/readyz', { ok: [200] }); return true; } catch (e) {
      if (e.status === 503) return false; throw e;
    }
  }
  async metrics() {
    const r = await this.request('GET', '/metrics', { headers: { Accept: 'text/plain' } });
    return new TextDecoder().decode(r.body);
  }
  info() { return this.json('GET', '/v1'); }
  types() { return this.json('GET', '/v1/types'); }
  typeOptions(type) { return this.json('GET', `/v1/types/${seg(type)}/options`); }

  // ---- layers ----

  async listLayers() { const d = await this.json('GET', '/v1/layers'); return d.layers ?? d; }
  createLayer(definition) { return this.json('POST', '/v1/layers', definition, { ok: [201] }); }
  putLayer(name, definition, { ifMatch: im } = {}) {
    return this.json('PUT', `/v1/layers/${seg(name)}`, definition, { headers: ifMatch(im), ok: [200, 201] });
  }
  getLayer(name) { return this.json('GET', `/v1/layers/${seg(name)}`); }
  async deleteLayer(name, { ifMatch: im } = {}) {
    await this.request('DELETE', `/v1/layers/${seg(name)}`, { headers: ifMatch(im), ok: [204] });
  }
  initialize(name, opts = {}) { return this.json('POST', `/v1/layers/${seg(name)}/initialize`, opts); }

  /** forward: a typed array or tensor goes binary and comes back as a tensor; nested arrays go as
   * JSON and come back nested. opts: shape (for a bare typed array), mode, batch, outputFormat,
   * inputs (a list of examples), full (answer { output, version }). */
  async forward(name, input, { shape, mode, batch, outputFormat, inputs, full = false } = {}) {
    const path = `/v1/layers/${seg(name)}/forward`;
    const t = input === undefined ? null : asTensor(input, shape);
    if (t && !inputs) {
      const r = await this.request('POST', path, {
        query: { mode, batch }, body: leBytes(t.data),
        headers: { 'Content-Type': BINARY_TYPE, 'X-Tensor-Shape': t.shape.join(','), Accept: BINARY_TYPE },
        ok: [200],
      });
      const out = fromLe(r.body, parseShape(r.headers.get('x-tensor-shape')));
      return full ? { output: out, version: etagVersion(r.headers.get('etag')) } : out;
    }
    const body = {};
    if (inputs) body.inputs = inputs;
    if (input !== undefined) body.input = input;
    if (mode !== undefined) body.mode = mode;
    if (batch !== undefined) body.batch = batch;
    if (outputFormat !== undefined) body.output_format = outputFormat;
    let doc = await this.json('POST', path, body);
    if (inputs && inputs.length && asTensor(inputs[0])) doc = decodeB64(doc);
    return full ? doc : (doc.outputs ?? doc.output);
  }

  /** train-step (JSON; tensors travel as base64 float32 and come back as tensors). opts:
   * outputGradient, target, loss, optimizer, return (list), outputFormat, and any other field. */
  async trainStep(name, input, opts = {}) {
    const { outputGradient, outputFormat, ...rest } = opts;
    const body = { input, ...rest };
    if (outputGradient !== undefined) body.output_gradient = outputGradient;
    if (outputFormat !== undefined) body.output_format = outputFormat;
    const doc = await this.json('POST', `/v1/layers/${seg(name)}/train-step`, body);
    return asTensor(input) ? decodeB64(doc) : doc;
  }

  /** extract; { tensors: true } fetches arrays as base64 and answers tensors. */
  async extract(name, keys, { outputFormat, tensors = false } = {}) {
    const body = { keys };
    if (tensors) body.output_format = 'b64';
    else if (outputFormat !== undefined) body.output_format = outputFormat;
    const doc = await this.json('POST', `/v1/layers/${seg(name)}/extract`, body);
    return tensors ? decodeB64(doc) : doc;
  }

  // ---- arrays ----

  listArrays(name) { return this.json('GET', `/v1/layers/${seg(name)}/arrays`); }

  /** One array: nested arrays, or with { binary: true } a tensor fetched as bytes. */
  async getArray(name, array, { binary = false, outputFormat } = {}) {
    const path = `/v1/layers/${seg(name)}/arrays/${seg(array)}`;
    if (binary) {
      const r = await this.request('GET', path, { headers: { Accept: BINARY_TYPE }, ok: [200] });
      return fromLe(r.body, parseShape(r.headers.get('x-tensor-shape')));
    }
    const doc = await this.json('GET', path, undefined, { query: { output_format: outputFormat } });
    return outputFormat !== undefined ? doc : doc.array;
  }

  /** Sets an array: a typed array or tensor as a binary body, anything else as JSON. */
  async putArray(name, array, value, { ifMatch: im, shape } = {}) {
    const path = `/v1/layers/${seg(name)}/arrays/${seg(array)}`;
    const t = asTensor(value, shape);
    if (t) {
      const r = await this.request('PUT', path, {
        body: leBytes(t.data), ok: [200],
        headers: { ...ifMatch(im), 'Content-Type': BINARY_TYPE, 'X-Tensor-Shape': t.shape.join(','), Accept: JSON_TYPE },
      });
      return JSON.parse(new TextDecoder().decode(r.body));
    }
    return this.json('PUT', path, { array: value }, { headers: ifMatch(im) });
  }

  // ---- export, import, shared arrays ----

  /** The JSON export, or with { binary: true } the binary one (Uint8Array). */
  async export(name, { binary = false, outputFormat } = {}) {
    const path = `/v1/layers/${seg(name)}/export`;
    if (binary) return (await this.request('GET', path, { headers: { Accept: BINARY_TYPE }, ok: [200] })).body;
    return this.json('GET', path, undefined, { query: { output_format: outputFormat } });
  }

  /** Imports a JSON export (object) or a binary one (Uint8Array / ArrayBuffer). */
  async importLayer(name, document, { ifMatch: im } = {}) {
    const path = `/v1/layers/${seg(name)}/import`;
    if (document instanceof Uint8Array || document instanceof ArrayBuffer) {
      const r = await this.request('POST', path, {
        body: document, ok: [200, 201],
        headers: { ...ifMatch(im), 'Content-Type': BINARY_TYPE, Accept: JSON_TYPE },
      });
      return JSON.parse(new TextDecoder().decode(r.body));
    }
    return this.json('POST', path, document, { headers: ifMatch(im), ok: [200, 201] });
  }

  async listSharedArrays() { return (await this.json('GET', '/v1/shared-arrays')).shared_arrays; }
  async getSharedArray(name, { tensors = false, outputFormat } = {}) {
    const doc = await this.json('GET', `/v1/shared-arrays/${seg(name)}`, undefined,
      { query: { output_format: tensors ? 'b64' : outputFormat } });
    return tensors ? decodeB64(doc) : doc;
  }

  // ---- Open Inference Protocol (KServe V2) ----

  modelPath(model, version) {
    return `/v2/models/${seg(model)}` + (version !== undefined && version !== null ? `/versions/${seg(version)}` : '');
  }
  serverMetadata() { return this.json('GET', '/v2'); }
  serverLive() { return this.oipOk('/v2/health/live'); }
  serverReady() { return this.oipOk('/v2/health/ready'); }
  modelReady(model, version) { return this.oipOk(this.modelPath(model, version) + '/ready'); }
  modelMetadata(model, version) { return this.json('GET', this.modelPath(model, version)); }
  async oipOk(path) {
    try { await this.request('GET', path, { ok: [200] }); return true; } catch (e) {
      if ([400, 404, 503].includes(e.status)) return false; throw e;
    }
  }

  async inputName(model) {
    if (!this.oipInputs.has(model)) this.oipInputs.set(model, (await this.modelMetadata(model)).inputs[0].name);
    return this.oipInputs.get(model);
  }

  /** OIP infer. input: one tensor (typed array + opts.shape, { data, shape }, or nested arrays),
   * named from the model's metadata unless opts.inputName; or opts.inputs: { name: value }.
   * Tensors go with the binary tensor data extension unless binary: false; binaryOutput
   * (default: as the input) asks for binary outputs; outputs: names wanted; raw: the raw binary
   * request; id, parameters, version. Outputs come back as tensors for tensor input (nested
   * arrays for nested-array input); answers an InferResult. */
  async infer(model, input, { shape, inputs, inputName, version, outputs, binary, binaryOutput,
    parameters, id, raw = false } = {}) {
    if (!inputs) inputs = { [inputName || await this.inputName(model)]: input };
    const entries = Object.entries(inputs).map(([n, v]) => [n, asTensor(v, shape), v]);
    const anyTensor = entries.some(([, t]) => t);
    if (binary === undefined) binary = anyTensor;
    if (binaryOutput === undefined) binaryOutput = binary;
    const path = this.modelPath(model, version) + '/infer';
    if (raw) {
      if (entries.length !== 1 || !entries[0][1]) throw new TypeError('a raw binary request carries one tensor');
      const r = await this.request('POST', path, {
        body: leBytes(entries[0][1].data), ok: [200],
        headers: { 'Content-Type': BINARY_TYPE, 'Inference-Header-Content-Length': '0' },
      });
      return inferResult(r, anyTensor);
    }
    const header = {};
    if (id !== undefined) header.id = id;
    const params = { ...parameters };
    if (binaryOutput) params.binary_data_output = true;
    if (Object.keys(params).length) header.parameters = params;
    const blobs = [];
    header.inputs = entries.map(([name, t, v]) => {
      if (t && binary) {
        const bytes = leBytes(t.data);
        blobs.push(bytes);
        return { name, shape: t.shape, datatype: 'FP32', parameters: { binary_data_size: bytes.byteLength } };
      }
      if (t) return { name, shape: t.shape, datatype: 'FP32', data: Array.from(t.data) };
      return { name, shape: listShape(v), datatype: 'FP32', data: [v].flat(Infinity) };
    });
    if (outputs) header.outputs = outputs.map((name) => ({ name, parameters: { binary_data: !!binaryOutput } }));
    const head = new TextEncoder().encode(JSON.stringify(header));
    let body = head;
    const headers = { 'Content-Type': JSON_TYPE };
    if (blobs.length) {
      const total = head.length + blobs.reduce((a, b) => a + b.byteLength, 0);
      body = new Uint8Array(total);
      body.set(head, 0);
      let off = head.length;
      for (const b of blobs) { body.set(b, off); off += b.byteLength; }
      headers['Content-Type'] = BINARY_TYPE;
      headers['Inference-Header-Content-Length'] = String(head.length);
    }
    const r = await this.request('POST', path, { body, headers, ok: [200] });
    return inferResult(r, anyTensor);
  }
}

function errorFromReply(r) {
  const rid = r.headers.get('x-request-id');
  let doc = null;
  try { doc = JSON.parse(new TextDecoder().decode(r.body)); } catch { /* not JSON */ }
  const e = doc && doc.error;
  if (e && typeof e === 'object')
    return new NormdError(e.status ?? r.status, e.code ?? null, e.message ?? '', e.field ?? null, rid, doc);
  if (typeof e === 'string') return new NormdError(r.status, null, e, null, rid, doc);
  return new NormdError(r.status, null, new TextDecoder().decode(r.body).trim(), null, rid, doc);
}

/** Splits an infer reply into its JSON header and the binary outputs after it, in order. */
function inferResult(r, asTensors) {
  const n = r.headers.get('inference-header-content-length');
  const hlen = n === null ? r.body.length : parseInt(n, 10);
  const doc = JSON.parse(new TextDecoder().decode(r.body.subarray(0, hlen)));
  let off = hlen;
  const outs = {};
  for (const o of doc.outputs || []) {
    const size = o.parameters?.binary_data_size;
    let t;
    if (size !== undefined) {
      if (off + size > r.body.length)
        throw new NormdError(r.status, null, `reply ends inside the binary data of output ${o.name}`, null, r.headers.get('x-request-id'));
      t = fromLe(r.body.subarray(off, off + size), o.shape, o.datatype || 'FP32');
      off += size;
    } else {
      t = { data: Float32Array.from([o.data].flat(Infinity)), shape: o.shape };
    }
    outs[o.name] = asTensors ? t : nest(Array.from(t.data), t.shape);
  }
  return new InferResult(doc, outs);
}
