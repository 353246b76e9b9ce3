// NumPy .npy (format 1.0) writer, so that a part downloaded from the browser
// loads with numpy.load(), like the server's /api/v1/jobs/ID/parts/NAME.npy.

const DESCR = {
  f32: '<f4',
  u32: '<u4',
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
