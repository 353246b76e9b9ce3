// NumPy .npy (format 1.0) writer, so that a part downloaded from the browser
// loads with numpy.load(), like the server's /api/v1/jobs/ID/parts/NAME.npy.

const DESCR = {
  f32: '<f4',
  u32: '<u4',
  i32: '<i4',
  u8: '|u1',
  bytes: '|u1',
};

/* The .npy header for dtype and shape: magic, version 1.0, u16 LE header length,
 * then the dict padded with spaces and a newline so the data starts on 64 bytes. */
export function npyHeader(dtype, shape) {
  const descr = DESCR[dtype];
  if (!descr) throw new Error(`no .npy type for dtype ${dtype}`);
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shapeText}, }`;
  const unpadded = 10 + dict.length + 1;
  dict += ' '.repeat((64 - (unpadded % 64)) % 64) + '\n';
  const bytes = new Uint8Array(10 + dict.length);
  bytes.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0], 0); // \x93NUMPY v1.0
  new DataView(bytes.buffer).setUint16(8, dict.length, true);
  for (let i = 0; i < dict.length; i++) bytes[10 + i] = dict.charCodeAt(i);
  return bytes;
}

/* A Blob holding part {dtype, shape, data} as .npy. Typed arrays are little-endian
 * on every platform a browser runs on; the server's frames are little-endian too. */
export function npyBlob(part) {
  const header = npyHeader(part.dtype, part.shape);
  const d = part.data;
  return new Blob([header, new Uint8Array(d.buffer, d.byteOffset, d.byteLength)], { type: 'application/octet-stream' });
}

/* Reads the header of a .npy file (format 1.0, 2.0 or 3.0) from its first bytes.
 * Returns {descr, fortranOrder, shape, dataOffset}; throws an Error saying what
 * is wrong (callers prefix the file's name). `bytes` must hold the whole header:
 * readNpyHeader() reads as much as it needs. */
export function parseNpyHeader(bytes) {
  const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];
  if (bytes.length < 10 || magic.some((b, i) => bytes[i] !== b)) throw new Error('is not a NumPy .npy file');
  const major = bytes[6];
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pre, hlen;
  if (major === 1) {
    pre = 10;
    hlen = dv.getUint16(8, true);
  } else if (major === 2 || major === 3) {
    if (bytes.length < 12) throw new Error('is not a NumPy .npy file');
    pre = 12;
    hlen = dv.getUint32(8, true);
  } else {
    throw new Error(`is a .npy file of version ${major}, which this page does not read`);
  }
  if (bytes.length < pre + hlen) return { needBytes: pre + hlen };
  const text = new TextDecoder().decode(bytes.subarray(pre, pre + hlen));
  const descr = /['"]descr['"]\s*:\s*['"]([^'"]*)['"]/.exec(text);
  const order = /['"]fortran_order['"]\s*:\s*(True|False)/.exec(text);
  const shape = /['"]shape['"]\s*:\s*\(([^)]*)\)/.exec(text);
  if (/['"]descr['"]\s*:\s*\[/.test(text)) throw new Error('holds a structured array, not plain numbers');
  if (!descr || !order || !shape) throw new Error('has a .npy header this page cannot read');
  const dims = shape[1].split(',').map((x) => x.trim()).filter(Boolean);
  if (dims.some((d) => !/^\d+$/.test(d))) throw new Error('has a .npy header this page cannot read');
  return { descr: descr[1], fortranOrder: order[1] === 'True', shape: dims.map(Number), dataOffset: pre + hlen };
}

const TYPE_NAMES = { f2: 'float16', f4: 'float32', f8: 'float64', i1: 'int8', i2: 'int16', i4: 'int32', i8: 'int64',
  u1: 'uint8', u2: 'uint16', u4: 'uint32', u8: 'uint64', b1: 'bool' };

/* Reads the header of a File or Blob holding a .npy array of vectors: C-order
 * little-endian float32 of shape [n][dim] with n, dim >= 1 and exactly n*dim*4
 * bytes of data. Returns {n, dim, dataOffset}; throws an Error whose message names
 * the file and the problem. */
export async function readVectorsNpy(file) {
  const name = file.name || 'the file';
  const fail = (why) => {
    throw new Error(`${name} ${why}`);
  };
  let h;
  try {
    h = parseNpyHeader(new Uint8Array(await file.slice(0, 4096).arrayBuffer()));
    if (h.needBytes) h = parseNpyHeader(new Uint8Array(await file.slice(0, h.needBytes).arrayBuffer()));
    if (h.needBytes) throw new Error('is cut short inside its .npy header');
  } catch (e) {
    fail(e.message);
  }
  if (h.descr !== '<f4') {
    if (h.descr === '>f4') fail('holds big-endian float32 (>f4); save it with a.astype("<f4")');
    const t = TYPE_NAMES[h.descr.replace(/^[<>|=]/, '')];
    fail(`holds ${t || 'values'} (${h.descr}), not float32; save it with a.astype(numpy.float32)`);
  }
  if (h.fortranOrder) fail('is in Fortran order; save numpy.ascontiguousarray(a)');
  const shapeText = `(${h.shape.join(', ')}${h.shape.length === 1 ? ',' : ''})`;
  if (h.shape.length !== 2) fail(`has shape ${shapeText}; vectors need 2 dimensions, [n][dim]`);
  const [n, dim] = h.shape;
  if (!n || !dim) fail(`holds no vectors (shape ${shapeText})`);
  const need = n * dim * 4, have = file.size - h.dataOffset;
  if (have !== need) fail(`has ${Math.max(0, have)} bytes of data where shape ${shapeText} of float32 needs ${need}`);
  return { n, dim, dataOffset: h.dataOffset };
}

/* A file input for a float32 .npy of rows [n][dim], beside a textarea where the same
 * rows may be typed: picking a file reads its header (an error goes to `error`, and
 * more than `max` rows is one, worded by tooMany(fileName, n)); typing text drops
 * the file. picked({file, n, dim, dataOffset}) is called for a good file. Returns
 * {get(): the picked file's header or null, clear()}. */
export function npyRowsPicker({ file, text, error, max, tooMany, picked }) {
  let current = null;
  const clear = () => {
    current = null;
    file.value = '';
  };
  file.addEventListener('change', async () => {
    error.textContent = '';
    current = null;
    const f = file.files[0];
    if (!f) return;
    try {
      const h = await readVectorsNpy(f);
      if (h.n > max) throw new Error(tooMany(f.name, h.n));
      current = { file: f, ...h };
      text.value = '';
      picked(current);
    } catch (e) {
      error.textContent = e.message;
      file.value = '';
    }
  });
  text.addEventListener('input', () => {
    if (current && text.value.trim()) clear();
  });
  return { get: () => current, clear };
}

/* The binary part of a job's f32 rows: a picked .npy file's data (npyRowsPicker),
 * sent straight from the file, or the Float32Array of rows typed as text. */
export function f32RowsPart(name, picked, typed) {
  if (picked) {
    return { name, dtype: 'f32', shape: [picked.n, picked.dim], blob: picked.file, start: picked.dataOffset,
      bytes: picked.n * picked.dim * 4 };
  }
  return { name, dtype: 'f32', shape: [typed.n, typed.dim], blob: new Blob([typed.data.buffer]), bytes: typed.data.byteLength };
}
