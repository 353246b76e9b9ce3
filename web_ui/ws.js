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

/* The connection failing (not open, closed while waiting): not an answer of the
 * server, nor anything the user typed. */
export class ConnectionError extends Error {}

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

/* Encodes one binary frame: "KLNB" | u32 LE header_len | header JSON | payload. */
export function encodeFrame(header, payload) {
  const h = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + h.length + payload.byteLength);
  out.set([0x4b, 0x4c, 0x4e, 0x42], 0);
  new DataView(out.buffer).setUint32(4, h.length, true);
  out.set(h, 8);
  out.set(new Uint8Array(payload.buffer || payload, payload.byteOffset || 0, payload.byteLength), 8 + h.length);
  return out;
}

const DTYPE_SIZE = { f32: 4, u32: 4, u8: 1, bytes: 1 };
const FRAME_CAP = 4 << 20;       // payload bytes per frame at most
const BUFFERED_MAX = 8 << 20;    // what the socket may hold before the next frame

/* Splits a part of `total` bytes into frames that each fit in maxMessage bytes:
 * [{offset, length}], and whether the frames carry "offset" (several frames).
 * Lengths are whole elements of the dtype. */
export function planFrames(header, total, maxMessage, cap = FRAME_CAP) {
  const single = 8 + new TextEncoder().encode(JSON.stringify(header)).length;
  if (total <= cap && single + total <= maxMessage) return { multi: false, frames: [{ offset: 0, length: total }] };
  const most = 8 + new TextEncoder().encode(JSON.stringify({ ...header, offset: total })).length;
  const es = DTYPE_SIZE[header.dtype] || 1;
  let chunk = Math.min(maxMessage - most, cap);
  chunk -= chunk % es;
  if (chunk <= 0) throw new Error(`the server's max_message_bytes (${maxMessage}) leaves no room for a part frame`);
  const frames = [];
  for (let off = 0; off < total; off += chunk) frames.push({ offset: off, length: Math.min(chunk, total - off) });
  return { multi: true, frames };
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
    this.resultWaiters = new Map(); // job -> [{resolve, reject}]
    this.welcome = null;
  }

  /* Opens the socket; resolves when it is open. */
  open() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url, 'kiln.v1');
      ws.binaryType = 'arraybuffer';
      this.ws = ws;
      ws.addEventListener('open', () => resolve(), { once: true });
      ws.addEventListener('error', () => reject(new ConnectionError('cannot connect to ' + this.url)), { once: true });
      ws.addEventListener('message', (ev) => this.onMessage(ev.data));
      ws.addEventListener('close', (ev) => {
        for (const p of this.pending.values()) p.reject(new ConnectionError('connection closed'));
        this.pending.clear();
        this.assembling.clear();
        // A result that was to come on this connection never will: its waiters hear so.
        for (const list of this.resultWaiters.values()) for (const w of list) w.reject(new ConnectionError('connection closed'));
        this.resultWaiters.clear();
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
    if (!this.isOpen) return Promise.reject(new ConnectionError('not connected'));
    const ref = 'ui' + this.nextRef++;
    return new Promise((resolve, reject) => {
      this.pending.set(ref, { resolve, reject, op: msg.op });
      this.ws.send(JSON.stringify({ ...msg, ref }));
    });
  }

  /* Sends binary parts, then `msg` naming them by the same ref (SPEC §2): each
   * part {name, dtype, shape, blob} (a Blob or File; `blob` bytes [start, start +
   * bytes)) goes in one frame, or in several with "offset" when it is larger than
   * the server's max_message_bytes. Resolves with the reply to msg; rejects with
   * the server's error, even one sent while frames were still going out (the rest
   * are then not sent). onProgress(fraction) follows the bytes sent. */
  upload(msg, parts, onProgress) {
    if (!this.isOpen) return Promise.reject(new ConnectionError('not connected'));
    const ref = 'ui' + this.nextRef++;
    const maxMessage = this.welcome?.limits?.max_message_bytes || 64 << 20;
    const ws = this.ws;
    let failed = false;
    const reply = new Promise((resolve, reject) => {
      this.pending.set(ref, { resolve, reject: (e) => { failed = true; reject(e); }, op: msg.op });
    });
    const send = async () => {
      const total = parts.reduce((a, p) => a + p.bytes, 0) || 1;
      let sent = 0;
      for (const p of parts) {
        const header = { ref, part: p.name, dtype: p.dtype, shape: p.shape };
        const plan = planFrames(header, p.bytes, maxMessage);
        for (const f of plan.frames) {
          if (failed || ws.readyState !== WebSocket.OPEN) return;
          // Backpressure: let the socket drain before reading the next piece.
          while (ws.bufferedAmount > BUFFERED_MAX && ws.readyState === WebSocket.OPEN && !failed) {
            await new Promise((r) => setTimeout(r, 20));
          }
          const start = (p.start || 0) + f.offset;
          const payload = new Uint8Array(await p.blob.slice(start, start + f.length).arrayBuffer());
          ws.send(encodeFrame(plan.multi ? { ...header, offset: f.offset } : header, payload));
          sent += f.length;
          if (onProgress) onProgress(sent / total);
        }
      }
      if (!failed && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ ...msg, ref }));
    };
    send().catch((e) => {
      // A local failure (reading the file, no room for a frame) ends the request.
      const p = this.pending.get(ref);
      this.pending.delete(ref);
      if (p) p.reject(e);
    });
    return reply;
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
    waiter.catch(() => {}); // rejected when the connection closes: then the request's error is the one thrown
    try {
      await this.request({ op: 'result', job });
    } catch (e) {
      this.resultWaiters.delete(job);
      throw e;
    }
    return waiter;
  }

  /* Resolves with the result of `job` when it comes; rejects when the connection
   * closes first (or is closed already). */
  waitResult(job) {
    return new Promise((resolve, reject) => {
      if (!this.isOpen) {
        reject(new ConnectionError('connection closed'));
        return;
      }
      const list = this.resultWaiters.get(job) || [];
      list.push({ resolve, reject });
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
    for (const w of waiters) w.resolve(res);
    this.dispatchEvent(new CustomEvent('result', { detail: res }));
  }
}

/* True when e is the connection failing (closed, not open), not an answer of the
 * server nor an error of the page: nothing the user typed is wrong. */
export function connectionLost(e) {
  return e instanceof ConnectionError;
}

/* What a kind page says when the connection went before its job (`what`) was
 * accepted: e, the connection's error, and what to do (`again`). */
export function lostBeforeAccepted(e, what = 'the job', again = 'submit it again') {
  return `The connection to kilnd was lost before ${what} was accepted (${e.message}): ${again} once it is back.`;
}

/* The result of an accepted job (acc: its `accepted`), kept across a lost
 * connection: the job goes on in kilnd, so when the connection closes first,
 * lost() is told (by default, `status` says so) and, once the page has a new open
 * connection (getClient(), which its reconnect hook sets), the result is asked for
 * again. Rejects with the server's error, or with the connection's when alive()
 * turns false (the page was left). */
export async function jobResult(getClient, acc, { status, alive, lost = () => {
  if (status) {
    status.textContent = `The connection to kilnd was lost: job …${acc.job.slice(-8)} goes on there, and its ` +
      'result shows here once the connection is back.';
  }
} } = {}) {
  let client = getClient();
  let again = acc.state === 'done';
  for (;;) {
    try {
      const have = client.results.get(acc.job);
      if (have) return have;
      return again ? await client.result(acc.job) : await client.waitResult(acc.job);
    } catch (e) {
      if (!connectionLost(e)) throw e;
      lost?.(e);
      again = true;
      for (;;) {
        if (alive && !alive()) throw e;
        await new Promise((r) => setTimeout(r, 250));
        const c = getClient();
        if (c?.isOpen) {
          client = c;
          break;
        }
      }
    }
  }
}

/* ws:// or wss:// URL of the API on the server that served this page. */
export function apiUrl(loc = window.location) {
  return (loc.protocol === 'https:' ? 'wss://' : 'ws://') + loc.host + '/ws';
}
