// A small WebGL viewer for triangle meshes (binary STL, glTF 2.0 binary), written
// for the relief page: flat-shaded triangles lit from two directions, an orbit
// camera (drag to turn, wheel or pinch to zoom, double-click to reset; arrow keys
// and +/- from the keyboard), drawn only when something changes. No library, no
// network: the mesh comes from the job's part.

/* ---- parsing ---- */

/* The triangles of a binary STL (mm, z up) or a GLB (metres, y up: turned back to
 * mm with z up) as {positions, normals} (Float32Array, 9 numbers per triangle),
 * {triangles, min, max}. Throws on bytes that are neither. */
export function parseMesh(bytes) {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const view = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  if (u8.length >= 12 && view.getUint32(0, true) === 0x46546c67) return parseGlb(u8, view);
  if (u8.length < 84) throw new Error('not a binary STL or GLB file');
  const n = view.getUint32(80, true);
  if (84 + 50 * n !== u8.length) throw new Error(`not a binary STL: ${n} triangles need ${84 + 50 * n} bytes, not ${u8.length}`);
  const positions = new Float32Array(9 * n);
  for (let t = 0; t < n; t++) {
    const at = 84 + 50 * t + 12;
    for (let k = 0; k < 9; k++) positions[9 * t + k] = view.getFloat32(at + 4 * k, true);
  }
  return finish(positions);
}

function parseGlb(u8, view) {
  const jsonLen = view.getUint32(12, true);
  if (view.getUint32(16, true) !== 0x4e4f534a) throw new Error('GLB without its JSON chunk');
  const doc = JSON.parse(new TextDecoder().decode(u8.subarray(20, 20 + jsonLen)));
  const binAt = 20 + jsonLen + 8;
  const prim = doc.meshes[0].primitives[0];
  const acc = (i) => {
    const a = doc.accessors[i];
    const bv = doc.bufferViews[a.bufferView];
    return { a, at: binAt + (bv.byteOffset || 0) + (a.byteOffset || 0) };
  };
  const pos = acc(prim.attributes.POSITION);
  const vertex = (i, k) => view.getFloat32(pos.at + 12 * i + 4 * k, true);
  const idx = prim.indices === undefined ? null : acc(prim.indices);
  const count = idx ? idx.a.count : pos.a.count;
  const size = idx ? { 5125: 4, 5123: 2, 5121: 1 }[idx.a.componentType] : 0;
  const index = (i) => (!idx ? i : size === 4 ? view.getUint32(idx.at + 4 * i, true)
    : size === 2 ? view.getUint16(idx.at + 2 * i, true) : view.getUint8(idx.at + i));
  const positions = new Float32Array(3 * count);
  for (let i = 0; i < count; i++) {
    const v = index(i);
    // glTF (x, y up, z towards the viewer) in metres -> (x, -z, y) in mm.
    positions[3 * i] = vertex(v, 0) * 1000;
    positions[3 * i + 1] = -vertex(v, 2) * 1000;
    positions[3 * i + 2] = vertex(v, 1) * 1000;
  }
  return finish(positions);
}

/* Flat normals and bounds. */
function finish(positions) {
  const n = positions.length / 9;
  const normals = new Float32Array(positions.length);
  const min = [Infinity, Infinity, Infinity], max = [-Infinity, -Infinity, -Infinity];
  const p = positions;
  for (let t = 0; t < n; t++) {
    const o = 9 * t;
    const ux = p[o + 3] - p[o], uy = p[o + 4] - p[o + 1], uz = p[o + 5] - p[o + 2];
    const vx = p[o + 6] - p[o], vy = p[o + 7] - p[o + 1], vz = p[o + 8] - p[o + 2];
    let nx = uy * vz - uz * vy, ny = uz * vx - ux * vz, nz = ux * vy - uy * vx;
    const len = Math.hypot(nx, ny, nz) || 1;
    nx /= len;
    ny /= len;
    nz /= len;
    for (let k = 0; k < 3; k++) {
      normals[o + 3 * k] = nx;
      normals[o + 3 * k + 1] = ny;
      normals[o + 3 * k + 2] = nz;
      for (let c = 0; c < 3; c++) {
        const v = p[o + 3 * k + c];
        if (v < min[c]) min[c] = v;
        if (v > max[c]) max[c] = v;
      }
    }
  }
  return { positions, normals, triangles: n, min, max };
}

/* ---- matrices (column-major, as WebGL wants them) ---- */

function perspective(fovy, aspect, near, far) {
  const f = 1 / Math.tan(fovy / 2), nf = 1 / (near - far);
  return [f / aspect, 0, 0, 0, 0, f, 0, 0, 0, 0, (far + near) * nf, -1, 0, 0, 2 * far * near * nf, 0];
}

function multiply(a, b) {
  const out = new Array(16).fill(0);
  for (let c = 0; c < 4; c++) for (let r = 0; r < 4; r++) for (let k = 0; k < 4; k++) out[4 * c + r] += a[4 * k + r] * b[4 * c + k];
  return out;
}

/* The view matrix of a camera at `eye` looking at `at`, z up. */
function lookAt(eye, at) {
  const sub = (a, b) => a.map((v, i) => v - b[i]);
  const norm = (a) => {
    const l = Math.hypot(...a) || 1;
    return a.map((v) => v / l);
  };
  const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
  const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
  const f = norm(sub(at, eye));
  const s = norm(cross(f, [0, 0, 1]));
  const u = cross(s, f);
  return [s[0], u[0], -f[0], 0, s[1], u[1], -f[1], 0, s[2], u[2], -f[2], 0, -dot(s, eye), -dot(u, eye), dot(f, eye), 1];
}

/* ---- the viewer ---- */

const VERTEX = `
attribute vec3 a_pos;
attribute vec3 a_normal;
uniform mat4 u_mvp;
uniform vec3 u_centre;
uniform float u_zmin, u_zspan;
varying vec3 v_normal;
varying float v_height;
void main() {
  v_normal = a_normal;
  v_height = clamp((a_pos.z - u_zmin) / u_zspan, 0.0, 1.0);
  gl_Position = u_mvp * vec4(a_pos - u_centre, 1.0);
}`;

const FRAGMENT = `
precision mediump float;
varying vec3 v_normal;
varying float v_height;
uniform vec3 u_light1, u_light2, u_eye_dir;
void main() {
  vec3 n = normalize(v_normal);
  float d1 = max(dot(n, u_light1), 0.0), d2 = max(dot(n, u_light2), 0.0);
  float rim = pow(1.0 - abs(dot(n, u_eye_dir)), 3.0);
  vec3 base = mix(vec3(0.55, 0.50, 0.44), vec3(0.96, 0.93, 0.86), v_height);
  vec3 c = base * (0.22 + 0.68 * d1 + 0.25 * d2) + 0.10 * rim;
  gl_FragColor = vec4(c, 1.0);
}`;

function compile(gl, type, src) {
  const s = gl.createShader(type);
  gl.shaderSource(s, src);
  gl.compileShader(s);
  if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(s) || 'shader did not compile');
  return s;
}

export class MeshViewer {
  /* Draws into `canvas` (its CSS size; the device pixel ratio is honoured).
   * Throws when the browser has no WebGL. */
  constructor(canvas) {
    this.canvas = canvas;
    const gl = canvas.getContext('webgl', { antialias: true, preserveDrawingBuffer: true });
    if (!gl) throw new Error('this browser has no WebGL');
    this.gl = gl;
    const prog = gl.createProgram();
    gl.attachShader(prog, compile(gl, gl.VERTEX_SHADER, VERTEX));
    gl.attachShader(prog, compile(gl, gl.FRAGMENT_SHADER, FRAGMENT));
    gl.linkProgram(prog);
    if (!gl.getProgramParameter(prog, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(prog) || 'no link');
    this.prog = prog;
    this.loc = {};
    for (const a of ['a_pos', 'a_normal']) this.loc[a] = gl.getAttribLocation(prog, a);
    for (const u of ['u_mvp', 'u_centre', 'u_zmin', 'u_zspan', 'u_light1', 'u_light2', 'u_eye_dir']) this.loc[u] = gl.getUniformLocation(prog, u);
    this.buffers = [gl.createBuffer(), gl.createBuffer()];
    this.count = 0;
    this.home = { yaw: -0.45, pitch: 0.85, zoom: 1 };
    this.cam = { ...this.home };
    this.frame = 0;
    this.listen();
    this.resizeObserver = new ResizeObserver(() => this.draw());
    this.resizeObserver.observe(canvas);
  }

  /* Shows a mesh from parseMesh(). */
  setMesh(mesh) {
    const gl = this.gl;
    gl.bindBuffer(gl.ARRAY_BUFFER, this.buffers[0]);
    gl.bufferData(gl.ARRAY_BUFFER, mesh.positions, gl.STATIC_DRAW);
    gl.bindBuffer(gl.ARRAY_BUFFER, this.buffers[1]);
    gl.bufferData(gl.ARRAY_BUFFER, mesh.normals, gl.STATIC_DRAW);
    this.count = mesh.positions.length / 3;
    this.centre = mesh.min.map((v, i) => (v + mesh.max[i]) / 2);
    this.radius = Math.hypot(...mesh.max.map((v, i) => v - mesh.min[i])) / 2 || 1;
    this.zmin = mesh.min[2];
    this.zspan = mesh.max[2] - mesh.min[2] || 1;
    this.draw();
  }

  /* Puts the camera back where it started. */
  reset() {
    this.cam = { ...this.home };
    this.draw();
  }

  listen() {
    const c = this.canvas;
    const pointers = new Map();
    let pinch = 0;
    this.handlers = {
      pointerdown: (e) => {
        c.setPointerCapture(e.pointerId);
        pointers.set(e.pointerId, [e.clientX, e.clientY]);
      },
      pointermove: (e) => {
        const last = pointers.get(e.pointerId);
        if (!last) return;
        if (pointers.size === 2) {
          const [a, b] = [...pointers.values()];
          const before = Math.hypot(a[0] - b[0], a[1] - b[1]);
          pointers.set(e.pointerId, [e.clientX, e.clientY]);
          const [p, q] = [...pointers.values()];
          const after = Math.hypot(p[0] - q[0], p[1] - q[1]);
          if (pinch && before > 0) this.zoomBy(before / after);
          pinch = 1;
          return;
        }
        this.turn((e.clientX - last[0]) * 0.01, (e.clientY - last[1]) * 0.01);
        pointers.set(e.pointerId, [e.clientX, e.clientY]);
      },
      pointerup: (e) => {
        pointers.delete(e.pointerId);
        pinch = 0;
      },
      wheel: (e) => {
        e.preventDefault();
        this.zoomBy(Math.exp(e.deltaY * 0.0015));
      },
      dblclick: () => this.reset(),
      keydown: (e) => {
        const k = { ArrowLeft: [-0.1, 0], ArrowRight: [0.1, 0], ArrowUp: [0, -0.1], ArrowDown: [0, 0.1] }[e.key];
        if (k) this.turn(k[0], k[1]);
        else if (e.key === '+' || e.key === '=') this.zoomBy(0.85);
        else if (e.key === '-') this.zoomBy(1 / 0.85);
        else if (e.key === '0') this.reset();
        else return;
        e.preventDefault();
      },
    };
    c.addEventListener('pointercancel', this.handlers.pointerup);
    for (const [name, fn] of Object.entries(this.handlers)) c.addEventListener(name, fn, name === 'wheel' ? { passive: false } : undefined);
  }

  turn(dyaw, dpitch) {
    this.cam.yaw -= dyaw;
    this.cam.pitch = Math.min(1.55, Math.max(-1.55, this.cam.pitch + dpitch));
    this.draw();
  }

  zoomBy(f) {
    this.cam.zoom = Math.min(20, Math.max(0.05, this.cam.zoom * f));
    this.draw();
  }

  /* Schedules one redraw. */
  draw() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  render() {
    const gl = this.gl, c = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(c.clientWidth * dpr)), h = Math.max(1, Math.round(c.clientHeight * dpr));
    if (c.width !== w || c.height !== h) {
      c.width = w;
      c.height = h;
    }
    gl.viewport(0, 0, w, h);
    gl.clearColor(0.07, 0.09, 0.12, 1);
    gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
    if (!this.count) return;
    gl.enable(gl.DEPTH_TEST);
    gl.useProgram(this.prog);
    // The bounding sphere fits the narrower of the two fields of view.
    const half = Math.min(0.3, Math.atan(Math.tan(0.3) * (w / h)));
    const r = this.radius, dist = (r / Math.sin(half)) * this.cam.zoom;
    const eye = [dist * Math.cos(this.cam.pitch) * Math.sin(this.cam.yaw), -dist * Math.cos(this.cam.pitch) * Math.cos(this.cam.yaw),
      dist * Math.sin(this.cam.pitch)];
    const mvp = multiply(perspective(0.6, w / h, Math.max(dist - 2 * r, dist / 100), dist + 2 * r), lookAt(eye, [0, 0, 0]));
    gl.uniformMatrix4fv(this.loc.u_mvp, false, new Float32Array(mvp));
    gl.uniform3fv(this.loc.u_centre, this.centre);
    gl.uniform1f(this.loc.u_zmin, this.zmin);
    gl.uniform1f(this.loc.u_zspan, this.zspan);
    const unit = (v) => {
      const l = Math.hypot(...v);
      return v.map((x) => x / l);
    };
    // A raking key light from the upper left (the relief's detail), a weak fill.
    gl.uniform3fv(this.loc.u_light1, unit([-0.7, 0.45, 0.55]));
    gl.uniform3fv(this.loc.u_light2, unit([0.6, -0.4, 0.35]));
    gl.uniform3fv(this.loc.u_eye_dir, unit(eye));
    const attrs = [this.loc.a_pos, this.loc.a_normal];
    attrs.forEach((loc, i) => {
      gl.bindBuffer(gl.ARRAY_BUFFER, this.buffers[i]);
      gl.enableVertexAttribArray(loc);
      gl.vertexAttribPointer(loc, 3, gl.FLOAT, false, 0, 0);
    });
    gl.drawArrays(gl.TRIANGLES, 0, this.count);
  }

  /* Frees the GPU buffers and stops listening. */
  destroy() {
    this.resizeObserver.disconnect();
    if (this.frame) cancelAnimationFrame(this.frame);
    for (const [name, fn] of Object.entries(this.handlers)) this.canvas.removeEventListener(name, fn);
    this.canvas.removeEventListener('pointercancel', this.handlers.pointerup);
    for (const b of this.buffers) this.gl.deleteBuffer(b);
    this.gl.deleteProgram(this.prog);
    this.count = 0;
  }
}
