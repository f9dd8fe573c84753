// normd.test.mjs - the JavaScript client against the real binary (NORMD = its path), with Node's
// built-in test runner: every /v1 route, numbers against references computed here, Float32Array
// as binary, errors (status, code, field, requestId), keep-alive reuse and retries counted by a
// TCP proxy, and OIP infer (JSON, binary tensor data extension, raw binary request).
//
//   NORMD=build/normd node --test clients/js/test/normd.test.mjs
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { existsSync } from 'node:fs';

import { Client, NormdError, tensor } from '../normd.mjs';

const NORMD = process.env.NORMD || 'build/normd';
const LIVENESS_MS = 20000; // start/stop bound, never a speed goal

const GAMMA = [2.0, 0.5, 1.0], BETA = [0.1, -0.2, 0.3], MEAN = [1.0, 2.0, 3.0], VAR = [4.0, 0.25, 1.0];
const EPS = 0.001;
const X = [[1.5, 2.5, -1.0], [0.0, 2.0, 4.0]];
const bnDef = (name) => ({
  name, type: 'BatchNormalization', input: [3], options: { epsilon: EPS, momentum: 0.9 },
  arrays: { Scaling: GAMMA, Biases: BETA, MovingMean: MEAN, MovingVariance: VAR },
});
const reference = (x) => x.map((row) => row.map((v, c) => GAMMA[c] * (v - MEAN[c]) / Math.sqrt(VAR[c] + EPS) + BETA[c]));
const f32 = (v) => Math.fround(v);

function assertClose(got, want, rel = 1e-5, abs = 1e-6) {
  if (Array.isArray(want) || ArrayBuffer.isView(want)) {
    assert.equal(got.length, want.length);
    for (let i = 0; i < want.length; i++) assertClose(got[i], want[i], rel, abs);
  } else {
    assert.ok(Math.abs(got - want) <= abs + rel * Math.abs(want), `${got} != ${want}`);
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

async function startNormd(...flags) {
  assert.ok(existsSync(NORMD), `no normd binary at ${NORMD} (set NORMD)`);
  const port = await freePort();
  const proc = spawn(NORMD, ['--host', '127.0.0.1', '--port', String(port), '--log-level', 'warn', ...flags],
    { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + LIVENESS_MS;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`normd exited ${proc.exitCode}: ${stderr}`);
    try { if ((await fetch(url + '/healthz')).status === 200) break; } catch { /* not yet */ }
    if (Date.now() > deadline) { process.kill(proc.pid, 'SIGKILL'); throw new Error('normd did not start'); }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url, port,
    async stop() {
      if (proc.exitCode !== null) return;
      const done = new Promise((r) => proc.once('exit', r));
      process.kill(proc.pid, 'SIGTERM');
      const t = setTimeout(() => process.kill(proc.pid, 'SIGKILL'), LIVENESS_MS);
      await done;
      clearTimeout(t);
    },
  };
}

// A TCP proxy counting the connections it accepts; the first `drop` ones have their request head
// read (it arrived) and are closed unanswered.
function startProxy(targetPort, drop = 0) {
  return new Promise((resolve) => {
    const p = { accepted: 0, dropped: 0, sockets: new Set() };
    const server = net.createServer((c) => {
      p.accepted++;
      p.sockets.add(c);
      c.on('close', () => p.sockets.delete(c));
      c.on('error', () => {});
      if (p.dropped < drop) {
        p.dropped++;
        let head = '';
        c.on('data', (d) => { head += d; if (head.includes('\r\n\r\n')) c.destroy(); });
        return;
      }
      const u = net.connect(targetPort, '127.0.0.1');
      u.on('error', () => c.destroy());
      c.pipe(u).pipe(c);
      c.on('close', () => u.destroy());
      u.on('close', () => c.destroy());
    });
    server.listen(0, '127.0.0.1', () => {
      p.url = `http://127.0.0.1:${server.address().port}`;
      p.close = () => new Promise((r) => { for (const s of p.sockets) s.destroy(); server.close(r); });
      resolve(p);
    });
  });
}

let srv;
let c;
before(async () => { srv = await startNormd(); c = new Client({ baseUrl: srv.url }); });
after(async () => { await srv.stop(); });

async function freshBn(name) {
  try { await c.deleteLayer(name); } catch { /* absent */ }
  return c.createLayer(bnDef(name));
}

async function rejectsWith(promise, fields) {
  try { await promise; } catch (e) {
    assert.ok(e instanceof NormdError, `not a NormdError: ${e}`);
    for (const [k, v] of Object.entries(fields)) assert.equal(e[k], v, `${k} of ${e.message}`);
    return e;
  }
  assert.fail('no error thrown');
}

describe('/v1', () => {
  test('server routes', async () => {
    assert.deepEqual(await c.health(), { status: 'ok' });
    assert.deepEqual(await c.ready(), { status: 'ready' });
    assert.equal(await c.isReady(), true);
    assert.equal((await c.info()).name, 'normd');
    assert.ok((await c.types()).types.includes('BatchNormalization'));
    assert.equal(typeof await c.typeOptions('BatchNormalization'), 'object');
    await rejectsWith(c.typeOptions('Nope'), { status: 404, code: 'not_found', field: 'type' });
  });

  test('layers: create, get, list, put with If-Match, initialize, delete', async () => {
    const info = await freshBn('js_layers');
    assert.equal(info.version, 1);
    assert.deepEqual((await c.getLayer('js_layers')).input, [3]);
    assert.ok((await c.listLayers()).some((l) => l.name === 'js_layers'));
    assert.equal((await c.putLayer('js_layers', bnDef('js_layers'), { ifMatch: 1 })).version, 2);
    await rejectsWith(c.putLayer('js_layers', bnDef('js_layers'), { ifMatch: 1 }),
      { status: 412, code: 'precondition_failed', field: 'If-Match' });
    await rejectsWith(c.createLayer(bnDef('js_layers')), { status: 409, code: 'already_exists' });
    await c.deleteLayer('js_layers', { ifMatch: 2 });
    const e = await rejectsWith(c.getLayer('js_layers'), { status: 404, code: 'not_found', field: 'name' });
    assert.ok(e.requestId);
    try { await c.deleteLayer('js_init'); } catch { /* absent */ }
    assert.equal((await c.createLayer({ name: 'js_init', type: 'BatchNormalization' })).initialized, false);
    await rejectsWith(c.forward('js_init', X), { status: 409, code: 'not_initialized' });
    assert.equal((await c.initialize('js_init', { input: [3] })).initialized, true);
  });

  test('forward: JSON and Float32Array match the reference', async () => {
    await freshBn('js_fwd');
    assertClose(await c.forward('js_fwd', X), reference(X));
    const flat = new Float32Array(X.flat());
    const r = await c.forward('js_fwd', flat, { shape: [2, 3], full: true });
    assert.ok(r.output.data instanceof Float32Array);
    assert.deepEqual(r.output.shape, [2, 3]);
    assert.equal(r.version, 1);
    assertClose(r.output.data, reference(X).flat());
    const js = await c.forward('js_fwd', X);
    assert.deepEqual(Array.from(r.output.data), js.flat().map(f32)); // the same bits as JSON
    assertClose((await c.forward('js_fwd', tensor(flat, [2, 3]))).data, reference(X).flat());
    assertClose(await c.forward('js_fwd', undefined, { inputs: X }), reference(X));
    await rejectsWith(c.forward('js_fwd', new Float32Array(4), { shape: [2, 2] }),
      { status: 422, code: 'shape_mismatch', field: 'input' });
    await rejectsWith(c.forward('js_fwd', X, { mode: 'sideways' }), { status: 422, field: 'mode' });
  });

  test('train-step matches the reference (JSON and tensors)', async () => {
    const g = [[0.5, -1.0, 2.0], [1.0, 0.25, -0.5]];
    const mu = [0, 1, 2].map((k) => (X[0][k] + X[1][k]) / 2);
    const vr = [0, 1, 2].map((k) => ((X[0][k] - mu[k]) ** 2 + (X[1][k] - mu[k]) ** 2) / 2);
    const xhat = X.map((r) => r.map((v, k) => (v - mu[k]) / Math.sqrt(vr[k] + EPS)));
    const scaling = [0, 1, 2].map((k) => GAMMA[k] - 0.1 * (g[0][k] * xhat[0][k] + g[1][k] * xhat[1][k]));
    const moving = [0, 1, 2].map((k) => 0.9 * MEAN[k] + 0.1 * mu[k]);
    await freshBn('js_train');
    const r = await c.trainStep('js_train', X, { outputGradient: g, optimizer: { type: 'sgd', learning_rate: 0.1 },
      return: ['arrays', 'batch_statistics'] });
    assert.equal(r.version, 2);
    assertClose(r.arrays.Scaling, scaling, 1e-4, 1e-5);
    assertClose(r.arrays.MovingMean, moving);
    assertClose(r.batch_statistics.variance, vr, 1e-4);
    await freshBn('js_train');
    const t = await c.trainStep('js_train', tensor(X.flat(), [2, 3]), { outputGradient: tensor(g.flat(), [2, 3]),
      optimizer: { type: 'sgd', learning_rate: 0.1 }, return: ['output', 'arrays'] });
    assert.ok(t.output.data instanceof Float32Array);
    assertClose(t.arrays.Scaling.data, scaling, 1e-4, 1e-5);
    await rejectsWith(c.trainStep('js_train', X, { outputGradient: [[1, 2, 3]] }),
      { status: 422, code: 'shape_mismatch', field: 'output_gradient' });
  });

  test('arrays, extract, shared arrays', async () => {
    await freshBn('js_arr');
    assert.deepEqual(await c.getArray('js_arr', 'MovingVariance'), VAR);
    const b = await c.getArray('js_arr', 'gamma', { binary: true });
    assert.deepEqual(Array.from(b.data), GAMMA);
    assert.deepEqual((await c.putArray('js_arr', 'MovingMean', [0, 0.5, 1])).version, 2);
    assert.deepEqual(await c.putArray('js_arr', 'MovingVariance', new Float32Array([1, 1, 1]), { ifMatch: 2 }),
      { name: 'MovingVariance', version: 3 });
    const ex = await c.extract('js_arr', ['MovingMean', 'MovingVariance', 'Epsilon']);
    assert.deepEqual(ex.MovingMean, [0, 0.5, 1]);
    assert.deepEqual(ex.MovingVariance, [1, 1, 1]);
    assertClose(ex.Epsilon, EPS);
    assert.deepEqual(Array.from((await c.extract('js_arr', ['Scaling'], { tensors: true })).Scaling.data), GAMMA);
    assert.deepEqual((await c.listArrays('js_arr')).arrays.map((a) => a.name),
      ['Scaling', 'Biases', 'MovingMean', 'MovingVariance']);
    await rejectsWith(c.putArray('js_arr', 'Scaling', new Float32Array(2)), { status: 422, code: 'shape_mismatch' });
    await rejectsWith(c.getArray('js_arr', 'Nope'), { status: 404, code: 'not_found', field: 'array' });
    for (const n of ['js_sa', 'js_sb']) {
      try { await c.deleteLayer(n); } catch { /* absent */ }
      await c.createLayer({ name: n, type: 'BatchNormalization', input: [3], arrays: { Scaling: { shared: 'js_g' } } });
    }
    assert.ok((await c.listSharedArrays()).includes('js_g'));
    await c.putArray('js_sa', 'Scaling', [3, 2, 1]);
    const sa = await c.getSharedArray('js_g');
    assert.deepEqual(sa.layers.slice().sort(), ['js_sa', 'js_sb']);
    assert.deepEqual(Array.from((await c.getSharedArray('js_g', { tensors: true })).array.data), [3, 2, 1]);
    assert.deepEqual(await c.getArray('js_sb', 'Scaling'), [3, 2, 1]);
  });

  test('export and import, JSON and binary', async () => {
    await freshBn('js_exp');
    await c.trainStep('js_exp', X, { outputGradient: X, optimizer: { type: 'adam' } });
    const doc = await c.export('js_exp');
    assert.equal(doc.format, 'normd-layer');
    const blob = await c.export('js_exp', { binary: true });
    assert.equal(new TextDecoder().decode(blob.subarray(0, 4)), 'NDX1');
    for (const [n, body] of [['js_exp_j', doc], ['js_exp_b', blob]]) {
      try { await c.deleteLayer(n); } catch { /* absent */ }
      assert.equal((await c.importLayer(n, body)).version, 2);
      assert.deepEqual(await c.forward(n, X), await c.forward('js_exp', X));
    }
    await rejectsWith(c.importLayer('js_exp_x', new TextEncoder().encode('NDX1garbage')),
      { status: 400, code: 'malformed_body', field: 'body' });
  });

  test('metrics', async () => {
    assert.match(await c.metrics(), /normd_http_requests_total\{route="\/v1\/layers\/\{name\}\/forward",status="200"\}/);
  });
});

describe('connections', () => {
  test('keep-alive: one connection for many calls', async () => {
    await freshBn('js_ka');
    const p = await startProxy(srv.port);
    try {
      const k = new Client({ baseUrl: p.url });
      const flat = new Float32Array(X.flat());
      for (let i = 0; i < 5; i++) {
        await k.forward('js_ka', X);
        await k.forward('js_ka', flat, { shape: [2, 3] });
        await k.getArray('js_ka', 'Scaling', { binary: true });
        await k.putArray('js_ka', 'Biases', new Float32Array(BETA));
        await k.getLayer('js_ka');
      }
      await rejectsWith(k.getLayer('no_such_layer'), { status: 404 });
      await k.metrics();
      // 27 calls; without keep-alive, 27 connections. Node's fetch (undici) may open a second
      // connection for the second call before the first socket is back in its pool, then reuses both.
      assert.ok(p.accepted >= 1 && p.accepted <= 2, `${p.accepted} connections for 27 calls`);
    } finally { await p.close(); }
  });

  test('GET is retried after a dropped request', async () => {
    await freshBn('js_rt');
    const p = await startProxy(srv.port, 1);
    try {
      const k = new Client({ baseUrl: p.url, retries: 2, backoffMs: 10 });
      assert.equal((await k.getLayer('js_rt')).name, 'js_rt');
      assert.equal(p.dropped, 1);
      assert.equal(p.accepted, 2);
    } finally { await p.close(); }
  });

  test('retries are bounded', async () => {
    await freshBn('js_rb');
    const p = await startProxy(srv.port, 10);
    try {
      const k = new Client({ baseUrl: p.url, retries: 2, backoffMs: 10 });
      await rejectsWith(k.getLayer('js_rb'), { status: 0, code: 'connection_error' });
      assert.equal(p.accepted, 3);
    } finally { await p.close(); }
  });

  test('POST train-step is never retried', async () => {
    await freshBn('js_post');
    const p = await startProxy(srv.port, 1);
    try {
      const k = new Client({ baseUrl: p.url, retries: 3, backoffMs: 10 });
      const e = await rejectsWith(k.trainStep('js_post', X, { outputGradient: X }), { status: 0, code: 'connection_error' });
      assert.equal(e.sent, true);
      assert.equal(p.accepted, 1);
      assert.equal(p.dropped, 1);
      assert.equal((await c.getLayer('js_post')).version, 1); // the server never saw it
      assert.equal((await k.trainStep('js_post', X, { outputGradient: X })).version, 2);
    } finally { await p.close(); }
  });

  test('unreachable and timeout', async () => {
    const port = await freePort();
    const k = new Client({ baseUrl: `http://127.0.0.1:${port}`, retries: 1, backoffMs: 10 });
    const e = await rejectsWith(k.trainStep('x', X), { status: 0, code: 'connection_error' });
    assert.equal(e.sent, false);
    const silent = net.createServer(() => {}); // accepts, never answers
    await new Promise((r) => silent.listen(0, '127.0.0.1', r));
    try {
      const t = new Client({ baseUrl: `http://127.0.0.1:${silent.address().port}`, timeoutMs: 300, retries: 0 });
      await rejectsWith(t.forward('x', X), { status: 0, code: 'timeout' });
    } finally {
      silent.close();
      if (silent.closeAllConnections) silent.closeAllConnections();
    }
  });

  test('API key', async () => {
    const s = await startNormd('--api-key', 's3cret');
    try {
      const anon = new Client({ baseUrl: s.url });
      assert.deepEqual(await anon.health(), { status: 'ok' });
      await rejectsWith(anon.listLayers(), { status: 401, code: 'unauthorized', field: 'Authorization' });
      const k = new Client({ baseUrl: s.url, apiKey: 's3cret' });
      assert.deepEqual(await k.listLayers(), []);
    } finally { await s.stop(); }
  });
});

describe('Open Inference Protocol', () => {
  const M = 'js_oip';
  before(async () => { await freshBn(M); });
  const flat = () => new Float32Array(X.flat());

  test('metadata and readiness', async () => {
    assert.ok((await c.serverMetadata()).extensions.includes('binary_tensor_data'));
    assert.equal(await c.serverLive(), true);
    assert.equal(await c.serverReady(), true);
    const meta = await c.modelMetadata(M);
    assert.equal(meta.platform, 'normd_BatchNormalization');
    assert.deepEqual(meta.inputs[0].shape, [-1, 3]);
    assert.equal(meta.inputs[0].datatype, 'FP32');
    assert.equal(await c.modelReady(M), true);
    assert.equal(await c.modelReady('no_such_model'), false);
  });

  test('infer JSON', async () => {
    const r = await c.infer(M, X, { id: 'js-7' });
    assert.equal(r.id, 'js-7');
    assert.equal(r.modelName, M);
    assert.equal(String(r.modelVersion), '1');
    assertClose(r.output, reference(X));
  });

  test('infer binary in and out', async () => {
    const r = await c.infer(M, flat(), { shape: [2, 3] });
    assert.equal(r.response.outputs[0].parameters.binary_data_size, 24);
    assert.ok(r.output.data instanceof Float32Array);
    assertClose(r.output.data, reference(X).flat());
    const v1 = await c.forward(M, flat(), { shape: [2, 3] });
    assert.deepEqual(Array.from(r.output.data), Array.from(v1.data));
  });

  test('infer binary in, JSON out; JSON in, binary out', async () => {
    const a = await c.infer(M, flat(), { shape: [2, 3], binaryOutput: false });
    assert.ok('data' in a.response.outputs[0]);
    assertClose(a.output.data, reference(X).flat());
    const b = await c.infer(M, flat(), { shape: [2, 3], binary: false, binaryOutput: true, outputs: ['output'] });
    assert.equal(b.response.outputs[0].parameters.binary_data_size, 24);
    assertClose(b.output.data, reference(X).flat());
  });

  test('infer raw binary request', async () => {
    const r = await c.infer(M, flat(), { shape: [2, 3], raw: true });
    assertClose(r.output.data, reference(X).flat());
  });

  test('infer errors', async () => {
    const e = await rejectsWith(c.infer('no_such_model', X, { inputName: 'input' }), { status: 404, code: null });
    assert.ok(e.message);
    await rejectsWith(c.infer(M, [[1, 2]]), { status: 400 });
    await rejectsWith(c.infer(M, X, { inputName: 'not_the_input' }), { status: 400 });
  });
});
