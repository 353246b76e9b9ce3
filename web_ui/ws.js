// The kiln.v1 protocol client (SPEC §2): one WebSocket, hello/welcome, requests
// matched to replies by "ref", pushes (stats, progress, done) as events, and KLNB
// binary frames decoded into typed arrays and attached to their job's `done`.

const DTYPES = {
  f32: Float32Array,
  u32: Uint32Array,
  u8: Uint8Array,
  bytes: Uint8Array,
};

/* An error reply of the server (SPEC §2.5) as a JavaScript Error. */
export class KilnError extends Error {
  constructor(msg) {
    super(msg.message || msg.code || 'error');
    this.code = msg.code;
    this.field = msg.field;
  }
}

/* Decodes one binary frame: "KLNB" | u32 LE header_len | header JSON | payload.
 * Returns {header, data} where data is a typed array of the header's dtype,
 * copied so that it is aligned whatever the header's length. */
export function decodeFrame(buf) {
  const bytes = new Uint8Array(buf);
  if (bytes.length < 8 || bytes[0] !== 0x4b || bytes[1] !== 0x4c || bytes[2] !== 0x4e || bytes[3] !== 0x42) {
    throw new Error('binary frame without the KLNB magic');
  }
  const hlen = new DataView(buf).getUint32(4, true);
  if (8 + hlen > bytes.length) throw new Error('binary frame header runs past the frame');
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + hlen)));
  const Type = DTYPES[header.dtype] || Uint8Array;
  const payload = buf.slice(8 + hlen);
  if (payload.byteLength % Type.BYTES_PER_ELEMENT) throw new Error(`part ${header.part}: payload is not whole ${header.dtype} values`);
  return { header, data: new Type(payload) };
}

export class KilnClient extends EventTarget {
  constructor(url) {
    super();
    this.url = url;
    this.ws = null;
    this.nextRef = 1;
    this.pending = new Map();    // ref -> {resolve, reject, op}
    this.assembling = new Map(); // job -> {done, parts: Map(name -> part), missing}
    this.results = new Map();    // job -> complete {done, parts}
    this.resultWaiters = new Map(); // job -> [resolve]
    this.welcome = null;
  }

  /* Opens the socket; resolves when it is open. */
  open() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url, 'kiln.v1');
      ws.binaryType = 'arraybuffer';
      this.ws = ws;
      ws.addEventListener('open', () => resolve(), { once: true });
      ws.addEventListener('error', () => reject(new Error('cannot connect to ' + this.url)), { once: true });
      ws.addEventListener('message', (ev) => this.onMessage(ev.data));
      ws.addEventListener('close', (ev) => {
        for (const p of this.pending.values()) p.reject(new Error('connection closed'));
        this.pending.clear();
        this.assembling.clear();
        if (this.ws === ws) this.dispatchEvent(new CustomEvent('close', { detail: { code: ev.code, reason: ev.reason } }));
      });
    });
  }

  close() {
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close(1000);
    }
  }

  get isOpen() {
    return this.ws && this.ws.readyState === WebSocket.OPEN;
  }

  /* Sends one message with a fresh ref; resolves with the first reply that
   * echoes it, rejects with a KilnError when that reply is an error. */
  request(msg) {
    if (!this.isOpen) return Promise.reject(new Error('not connected'));
    const ref = 'ui' + this.nextRef++;
    return new Promise((resolve, reject) => {
      this.pending.set(ref, { resolve, reject, op: msg.op });
      this.ws.send(JSON.stringify({ ...msg, ref }));
    });
  }

  async hello(token) {
    const msg = { op: 'hello', client: 'kiln-web/1' };
    if (token) msg.token = token;
    this.welcome = await this.request(msg);
    return this.welcome;
  }

  /* The whole result of a finished job: {done, parts: Map(name -> {dtype, shape, data})}.
   * Rejects with the server's error (not_found, ...). A job not finished yet
   * resolves when it finishes (the server answers `ok` and sends `done` later). */
  async result(job) {
    const waiter = this.waitResult(job);
    try {
      await this.request({ op: 'result', job });
    } catch (e) {
      this.resultWaiters.delete(job);
      throw e;
    }
    return waiter;
  }

  waitResult(job) {
    return new Promise((resolve) => {
      const list = this.resultWaiters.get(job) || [];
      list.push(resolve);
      this.resultWaiters.set(job, list);
    });
  }

  onMessage(data) {
    if (typeof data !== 'string') {
      this.onBinary(data);
      return;
    }
    let msg;
    try {
      msg = JSON.parse(data);
    } catch (e) {
      this.dispatchEvent(new CustomEvent('protocol-error', { detail: String(e) }));
      return;
    }
    if (msg.op === 'done') this.onDone(msg);
    if (msg.ref !== undefined && this.pending.has(msg.ref)) {
      const p = this.pending.get(msg.ref);
      this.pending.delete(msg.ref);
      if (msg.op === 'error') p.reject(new KilnError(msg));
      else p.resolve(msg);
      if (msg.op === 'error') return;
    } else if (msg.op === 'error') {
      this.dispatchEvent(new CustomEvent('server-error', { detail: msg }));
      return;
    }
    if (msg.op === 'stats' || msg.op === 'progress') this.dispatchEvent(new CustomEvent(msg.op, { detail: msg }));
  }

  onDone(msg) {
    this.dispatchEvent(new CustomEvent('done', { detail: msg }));
    const parts = msg.parts || [];
    const entry = { done: msg, parts: new Map(), missing: new Set(parts.map((p) => p.name)) };
    if (entry.missing.size === 0) this.complete(msg.job, entry);
    else this.assembling.set(msg.job, entry);
  }

  onBinary(buf) {
    let frame;
    try {
      frame = decodeFrame(buf);
    } catch (e) {
      this.dispatchEvent(new CustomEvent('protocol-error', { detail: String(e) }));
      return;
    }
    const { header, data } = frame;
    const entry = this.assembling.get(header.job);
    if (!entry || !entry.missing.has(header.part)) return;
    entry.parts.set(header.part, { name: header.part, dtype: header.dtype, shape: header.shape || [data.length], data });
    entry.missing.delete(header.part);
    if (entry.missing.size === 0) {
      this.assembling.delete(header.job);
      this.complete(header.job, entry);
    }
  }

  complete(job, entry) {
    const res = { done: entry.done, parts: entry.parts };
    if (entry.done.state === 'done') {
      this.results.delete(job);
      this.results.set(job, res);
      // Results can be large: keep only the few most recent.
      while (this.results.size > 6) this.results.delete(this.results.keys().next().value);
    }
    const waiters = this.resultWaiters.get(job) || [];
    this.resultWaiters.delete(job);
    for (const w of waiters) w(res);
    this.dispatchEvent(new CustomEvent('result', { detail: res }));
  }
}

/* ws:// or wss:// URL of the API on the server that served this page. */
export function apiUrl(loc = window.location) {
  return (loc.protocol === 'https:' ? 'wss://' : 'ws://') + loc.host + '/ws';
}
