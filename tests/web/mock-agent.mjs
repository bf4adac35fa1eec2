// A stand-in for `kvmscope agent` to develop the web UI without KVM: it
// serves web/ and answers the CA API with synthetic data of the documented
// shapes (one guest "demo" with 2 vCPUs, an interrupt every second at
// +250 ms). Usage: node tests/web/mock-agent.mjs PORT [WEB_DIR] [TOKEN]
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';

const port = Number(process.argv[2] || 7199);
const webDir = path.resolve(process.argv[3] || 'web');
const token = process.argv[4] || '';
const fieldsOf = {
  'vm.exits': ['hostname', 'vm', 'vcpu', 'reason', 'class', 'latency', 'subsecond'],
  'vm.irqs': ['hostname', 'vm', 'vcpu', 'vector', 'source', 'subsecond'],
  'vm.disk_ops': ['hostname', 'vm', 'disk', 'optype', 'errno', 'latency', 'size', 'offset', 'subsecond'],
  'vm.disk_bytes': ['hostname', 'vm', 'disk', 'optype'],
  'vm.nic_bytes': ['hostname', 'vm', 'nic', 'direction'],
  'vm.nic_packets': ['hostname', 'vm', 'nic', 'direction'],
  'vm.samples': ['hostname', 'vm', 'vcpu', 'mmuctx', 'subsecond'],
};
const S = (label) => ({ label, type: 'string' });
const fields = {
  hostname: S('hostname'), vm: S('VM name'), vcpu: S('vCPU index'), reason: S('exit reason'),
  class: S('exit class'), vector: S('vector'), source: S('interrupt source'), disk: S('disk'),
  optype: S('operation type'), errno: S('error'), nic: S('NIC'), direction: S('direction'), mmuctx: S('guest CR3'),
  latency: { label: 'latency', type: 'time', unit: 'nanoseconds', bucketing: { method: 'log-linear', base: 10, min_order: 0, max_order: 11, steps: 100 } },
  size: { label: 'size', type: 'size', unit: 'bytes', bucketing: { method: 'log-linear', base: 2, min_order: 0, max_order: 40, steps: 1 } },
  offset: { label: 'offset', type: 'size', unit: 'bytes', bucketing: { method: 'log-linear', base: 2, min_order: 0, max_order: 50, steps: 1 } },
  subsecond: { label: 'subsecond offset', type: 'subsecond', unit: 'milliseconds', bucketing: { method: 'linear', min: 0, max: 1000, width: 10 } },
};
const catalogue = {
  modules: { vm: { label: 'Virtual Machines' } },
  metrics: Object.keys(fieldsOf).map((m) => ({ module: 'vm', stat: m.slice(3), label: m, interval: 'interval', unit: m.endsWith('bytes') ? 'bytes' : 'ops', fields: fieldsOf[m] })),
  fields,
  types: {
    string: { arity: 'discrete', unit: '' },
    time: { arity: 'numeric', unit: 'seconds', abbr: 's', base: 10, power: -9 },
    subsecond: { arity: 'numeric', unit: 'seconds', abbr: 's', base: 10, power: -3 },
    size: { arity: 'numeric', unit: 'bytes', abbr: 'B', base: 2, power: 0 },
    number: { arity: 'numeric', unit: '' },
  },
  transformations: {},
};
const vms = [{ pid: 4242, name: 'demo', vcpus: [{ index: 0, tid: 4243 }, { index: 1, tid: 4244 }], disks: [{ path: '/var/lib/demo.img' }], nics: [{ name: 'tap0' }] }];
const instrs = new Map();
let nextId = 1;

// Synthetic events of one second for a metric: {field: value} records.
function events(metric, t) {
  const out = [];
  if (metric === 'vm.irqs') {
    out.push({ vm: 'demo', vcpu: '0', vector: '0x30', source: 'ioapic', subsecond: 250 });
    if (t % 2) out.push({ vm: 'demo', vcpu: '1', vector: '0xec', source: 'lapic', subsecond: 600 + (t % 10) * 10 });
  } else if (metric === 'vm.exits') {
    for (const [vcpu, n] of [['0', 40], ['1', 12]])
      for (let i = 0; i < n; i++) out.push({ vm: 'demo', vcpu, reason: ['IO_INSTRUCTION', 'HLT', 'EPT_MISCONFIG'][i % 3], class: ['iox', 'haltx', 'mmiox'][i % 3], latency: 2000 + i * 300, subsecond: (i * 23 + t) % 1000 });
  } else if (metric === 'vm.samples') {
    for (let i = 0; i < 99; i++) out.push({ vm: 'demo', vcpu: '0', mmuctx: i % 5 ? '0x1000' : '0x2000', subsecond: Math.floor(i * 10.1) });
  } else if (metric === 'vm.disk_ops') {
    for (let i = 0; i < 20; i++) out.push({ vm: 'demo', disk: 'vda', optype: i % 4 ? 'read' : 'write', errno: '0', latency: 50000, size: 4096, offset: ((t * 7 + i) % 64) * 1048576, subsecond: i * 50 });
  }
  return out.map((e) => ({ hostname: 'mock', ...e }));
}
function test(p, e) {
  if (!p || !Object.keys(p).length) return true;
  const [op, a] = Object.entries(p)[0];
  if (op === 'and') return a.every((x) => test(x, e));
  if (op === 'or') return a.some((x) => test(x, e));
  const v = e[a[0]], w = a[1];
  return { eq: v == w, ne: v != w, lt: v < w, le: v <= w, gt: v > w, ge: v >= w }[op];
}
function value(ins, t) {
  const num = ins.decomposition.find((f) => fields[f].type !== 'string');
  const disc = ins.decomposition.filter((f) => f !== num);
  const ev = events(`${ins.module}.${ins.stat}`, t).filter((e) => test(ins.predicate, e));
  const bucket = (v) => num === 'subsecond' ? Math.floor(v / 10) * 10 : Math.pow(2, Math.floor(Math.log2(Math.max(1, v))));
  const width = (lo) => num === 'subsecond' ? 10 : lo;
  const add = (d, e) => { const lo = bucket(e[num]); d[lo] = (d[lo] || 0) + 1; };
  const dist = (d) => Object.entries(d).map(([lo, c]) => [[Number(lo), Number(lo) + width(Number(lo)) - 1], c]);
  if (!disc.length && !num) return ev.length;
  if (!disc.length) { const d = {}; ev.forEach((e) => add(d, e)); return dist(d); }
  const m = {};
  for (const e of ev) {
    const k = disc.map((f) => e[f]).join(',');
    if (num) { m[k] = m[k] || {}; add(m[k], e); } else m[k] = (m[k] || 0) + 1;
  }
  if (num) for (const k of Object.keys(m)) m[k] = dist(m[k]);
  return m;
}
function png(w, hgt, rgb) {
  const crcT = Array.from({ length: 256 }, (_, n) => { let c = n; for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1; return c >>> 0; });
  const crc = (b) => { let c = 0xffffffff; for (const x of b) c = crcT[(c ^ x) & 255] ^ (c >>> 8); return (c ^ 0xffffffff) >>> 0; };
  const chunk = (type, data) => { const l = Buffer.alloc(4); l.writeUInt32BE(data.length); const td = Buffer.concat([Buffer.from(type), data]); const c = Buffer.alloc(4); c.writeUInt32BE(crc(td)); return Buffer.concat([l, td, c]); };
  const ihdr = Buffer.alloc(13); ihdr.writeUInt32BE(w, 0); ihdr.writeUInt32BE(hgt, 4); ihdr[8] = 8; ihdr[9] = 2;
  const raw = Buffer.alloc((w * 3 + 1) * hgt);
  for (let y = 0; y < hgt; y++) rgb.copy(raw, y * (w * 3 + 1) + 1, y * w * 3, (y + 1) * w * 3);
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}
// A crude CA-like heatmap: enough to exercise the UI, not the agent's renderer.
function heat(ins, q) {
  const w = Number(q.get('width') || 600), hgt = Number(q.get('height') || 300);
  const g = ins.granularity, now = Math.floor(Date.now() / 1000);
  const dur = Number(q.get('duration') || 600);
  const start = q.get('start_time') ? Number(q.get('start_time')) : now - dur;
  const num = ins.decomposition.find((f) => fields[f].type !== 'string');
  const ymin = Number(q.get('ymin') || 0), ymax = Number(q.get('ymax') || (num === 'subsecond' ? 1000 : 128 * 1048576));
  const nb = Math.min(hgt, Number(q.get('nbuckets') || 100));
  const sel = q.getAll('selected');
  const ncols = Math.min(w, dur / g);
  const cells = new Map();
  const present = new Set();
  for (let c = 0; c < ncols; c++) {
    const t = start + c * g;
    if (t < ins.crtime / 1000) continue;
    const v = value(ins, t);
    const per = Array.isArray(v) ? { '': v } : v;
    for (const [k, d] of Object.entries(per)) {
      if (k) present.add(k);
      for (const [[lo], n] of d) {
        const b = Math.floor(((lo - ymin) / (ymax - ymin)) * nb);
        if (b < 0 || b >= nb) continue;
        const key = `${c},${b}`;
        const cell = cells.get(key) || { total: 0, keys: {} };
        cell.total += n; if (k) cell.keys[k] = (cell.keys[k] || 0) + n;
        cells.set(key, cell);
      }
    }
  }
  const rgb = Buffer.alloc(w * hgt * 3, 255);
  for (const [key, cell] of cells) {
    const [c, b] = key.split(',').map(Number);
    const k0 = Object.keys(cell.keys)[0];
    const hue = sel.includes(k0) ? (21 + 91 * (1 + sel.indexOf(k0))) % 360 : 21;
    const x0 = Math.floor((c * w) / ncols), x1 = Math.floor(((c + 1) * w) / ncols);
    const y1 = hgt - Math.floor((b * hgt) / nb), y0 = hgt - Math.floor(((b + 1) * hgt) / nb);
    const col = hsv(hue, Math.min(1, 0.4 + cell.total / 50));
    for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) rgb.set(col, (y * w + x) * 3);
  }
  return { w, hgt, ncols, nb, ymin, ymax, start, dur, cells, present: [...present].sort(), rgb };
}
function hsv(hh, s) { const f = (n) => { const k = (n + hh / 60) % 6; return Math.round(255 * (1 - s * Math.max(0, Math.min(k, 4 - k, 1)))); }; return [f(5), f(3), f(1)]; }

function send(res, status, obj) {
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(obj));
}
const types = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml' };
http.createServer((req, res) => {
  const u = new URL(req.url, 'http://x');
  const q = u.searchParams;
  if (!u.pathname.startsWith('/ca')) {
    const p = path.join(webDir, path.normalize(u.pathname === '/' ? '/index.html' : u.pathname));
    if (!p.startsWith(webDir) || !fs.existsSync(p) || fs.statSync(p).isDirectory()) return send(res, 404, { code: 'ResourceNotFound', message: `no file ${u.pathname}` });
    res.writeHead(200, { 'Content-Type': types[path.extname(p)] || 'application/octet-stream' });
    return res.end(fs.readFileSync(p));
  }
  if (token && req.headers.authorization !== `Bearer ${token}`) return send(res, 401, { code: 'Unauthorized', message: 'a bearer token is required' });
  let body = '';
  req.on('data', (c) => { body += c; });
  req.on('end', () => {
    const m = u.pathname.match(/^\/ca\/instrumentations\/(\d+)(\/.*)?$/);
    if (u.pathname === '/ca') return send(res, 200, catalogue);
    if (u.pathname === '/ca/vms') return send(res, 200, vms);
    if (u.pathname === '/ca/instrumentations' && req.method === 'GET') return send(res, 200, [...instrs.values()]);
    if (u.pathname === '/ca/instrumentations' && req.method === 'POST') {
      let spec;
      try { spec = JSON.parse(body); } catch { return send(res, 400, { code: 'InvalidArgument', message: 'body: not JSON' }); }
      const [mod, stat] = spec.metric ? spec.metric.split('.') : [spec.module, spec.stat];
      if (!fieldsOf[`${mod}.${stat}`]) return send(res, 400, { code: 'InvalidArgument', message: `unknown metric "${mod}.${stat}"` });
      const decomposition = typeof spec.decomposition === 'string' ? spec.decomposition.split(',').filter(Boolean) : spec.decomposition || [];
      for (const f of decomposition) if (!fieldsOf[`${mod}.${stat}`].includes(f)) return send(res, 400, { code: 'InvalidArgument', message: `decomposition: ${mod}.${stat} has no field "${f}"` });
      const id = String(nextId++);
      const ins = { module: mod, stat, predicate: spec.predicate || {}, decomposition, granularity: Number(spec.granularity || 1), 'retention-time': Number(spec['retention-time'] || 600), 'idle-max': Number(spec['idle-max'] || 3600), crtime: Date.now(), id, uri: `/ca/instrumentations/${id}` };
      instrs.set(id, ins);
      res.setHeader('Location', ins.uri);
      return send(res, 201, ins);
    }
    if (!m || !instrs.has(m[1])) return send(res, 404, { code: 'ResourceNotFound', message: `no instrumentation ${u.pathname}` });
    const ins = instrs.get(m[1]);
    const sub = m[2] || '';
    if (!sub && req.method === 'DELETE') { instrs.delete(m[1]); res.writeHead(204); return res.end(); }
    if (!sub) return send(res, 200, ins);
    if (sub === '/value/raw') {
      const g = ins.granularity, n = Number(q.get('ndatapoints') || 1), d = Number(q.get('duration') || g);
      const now = Math.floor(Date.now() / 1000);
      const st = q.get('start_time') ? Number(q.get('start_time')) : now - n * d;
      const pts = [];
      for (let i = 0; i < n; i++) {
        const t = st + i * d;
        pts.push({ value: t * 1000 < ins.crtime ? (ins.decomposition.length ? {} : 0) : value(ins, t), start_time: t, duration: d });
      }
      return send(res, 200, n === 1 ? pts[0] : pts);
    }
    if (!ins.decomposition.some((f) => fields[f].type !== 'string')) return send(res, 409, { code: 'InvalidState', message: 'no numeric decomposition' });
    const hm = heat(ins, q);
    if (sub === '/value/heatmap/image')
      return send(res, 200, { image: png(hm.w, hm.hgt, hm.rgb).toString('base64'), ymin: hm.ymin, ymax: hm.ymax, nbuckets: hm.nb, width: hm.w, height: hm.hgt, present: hm.present, start_time: hm.start, duration: hm.dur });
    if (sub === '/value/heatmap/details') {
      const x = Number(q.get('x')), y = Number(q.get('y'));
      const c = Math.floor((x * hm.ncols) / hm.w), b = Math.floor(((hm.hgt - 1 - y) * hm.nb) / hm.hgt);
      const cell = hm.cells.get(`${c},${b}`) || { total: 0, keys: {} };
      const bw = (hm.ymax - hm.ymin) / hm.nb;
      return send(res, 200, { start_time: hm.start + c * ins.granularity, duration: ins.granularity, bucket_min: hm.ymin + b * bw, bucket_max: hm.ymin + (b + 1) * bw, present: cell.keys, total: cell.total });
    }
    if (sub === '/value/heatmap/average' || sub === '/value/heatmap/percentile') {
      const out = [];
      for (let c = 0; c < hm.ncols; c++) out.push([hm.start + c * ins.granularity, c % 7 ? 250 + (sub.endsWith('percentile') ? 300 : 0) : null]);
      return send(res, 200, out);
    }
    return send(res, 404, { code: 'ResourceNotFound', message: `no route ${u.pathname}` });
  });
}).listen(port, '127.0.0.1', () => console.log(`mock agent on 127.0.0.1:${port}, web ${webDir}`));
