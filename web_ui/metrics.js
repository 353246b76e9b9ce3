// A reader of the Prometheus text format served at /metrics, for the dashboard
// numbers the stats push does not carry (batch size histogram, cache counters,
// device utilisation).

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

function parseValue(s) {
  if (s === '+Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  return Number(s);
}

/* Returns {samples, sum(name, match), value(name, match), histogram(name)}; match is
 * an object of label values that a sample must carry. */
export function parseMetrics(text) {
  const samples = [];
  for (const line of text.split('\n')) {
    if (!line || line[0] === '#') continue;
    const m = LINE.exec(line);
    if (!m) continue;
    const labels = {};
    if (m[3]) for (const l of m[3].matchAll(LABEL)) labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
    samples.push({ name: m[1], labels, value: parseValue(m[4]) });
  }
  const matches = (s, name, match) => s.name === name && Object.entries(match || {}).every(([k, v]) => s.labels[k] === v);
  return {
    samples,
    /* The sum over all samples of `name` matching; undefined when there is none. */
    sum(name, match) {
      let total, seen = false;
      for (const s of samples) {
        if (matches(s, name, match) && Number.isFinite(s.value)) {
          total = (seen ? total : 0) + s.value;
          seen = true;
        }
      }
      return total;
    },
    value(name, match) {
      const s = samples.find((x) => matches(x, name, match));
      return s ? s.value : undefined;
    },
    /* [[le, cumulative count]] summed over every label set, le ascending. */
    histogram(name) {
      const by = new Map();
      for (const s of samples) {
        if (s.name !== name + '_bucket' || s.labels.le === undefined) continue;
        const le = parseValue(s.labels.le);
        by.set(le, (by.get(le) || 0) + s.value);
      }
      return [...by.entries()].sort((a, b) => a[0] - b[0]);
    },
  };
}
