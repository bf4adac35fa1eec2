// Small helpers shared by the views: DOM building, units, hues.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// The agent's default hue sequence (first 21, then +91 mod 360), so that a
// legend swatch and the PNG agree on a key's colour.
export function defaultHue(i) { return (21 + 91 * i) % 360; }

// HSV(h, s, 1) as CSS; s = 1 is the pure hue the agent uses at full intensity.
export function hueCss(hue, s = 1, v = 1) {
  const f = (n) => {
    const k = (n + hue / 60) % 6;
    return v - v * s * Math.max(0, Math.min(k, 4 - k, 1));
  };
  return `rgb(${Math.round(f(5) * 255)},${Math.round(f(3) * 255)},${Math.round(f(1) * 255)})`;
}

// A palette for stacked areas on a dark background.
export function seriesColor(i) { return `hsl(${(21 + 91 * i) % 360} 70% 55%)`; }

export function fmtCount(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  const a = Math.abs(v);
  if (a >= 1e9) return `${(v / 1e9).toFixed(a >= 1e10 ? 0 : 1)}G`;
  if (a >= 1e6) return `${(v / 1e6).toFixed(a >= 1e7 ? 0 : 1)}M`;
  if (a >= 1e4) return `${(v / 1e3).toFixed(a >= 1e5 ? 0 : 1)}k`;
  if (Number.isInteger(v)) return String(v);
  return v.toFixed(a < 10 ? 2 : 1);
}

// A numeric field's values in its own unit, formatted for an axis. The
// catalogue says the raw unit (ns for latency, ms for subsecond, bytes).
export function unitFormatter(field, types) {
  const t = (types && field && types[field.type]) || {};
  if (field && field.type === 'subsecond') return (v) => `${trim(v)} ms`;
  if (t.unit === 'seconds' && t.power === -9) {
    return (v) => {
      const a = Math.abs(v);
      if (a >= 1e9) return `${trim(v / 1e9)} s`;
      if (a >= 1e6) return `${trim(v / 1e6)} ms`;
      if (a >= 1e3) return `${trim(v / 1e3)} µs`;
      return `${trim(v)} ns`;
    };
  }
  if (t.unit === 'bytes') {
    return (v) => {
      const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
      let i = 0;
      while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
      return `${trim(v)} ${units[i]}`;
    };
  }
  return (v) => `${trim(v)}${field && field.unit ? ` ${field.unit}` : ''}`;
}

function trim(v) {
  if (Number.isInteger(v)) return String(v);
  const s = Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2);
  return s.replace(/\.?0+$/, '');
}

export function fmtTime(sec) {
  const d = new Date(sec * 1000);
  return d.toTimeString().slice(0, 8);
}

export function fmtDuration(s) {
  if (s % 86400 === 0) return `${s / 86400} d`;
  if (s % 3600 === 0) return `${s / 3600} h`;
  if (s % 60 === 0) return `${s / 60} min`;
  return `${s} s`;
}

// A round step so that an axis gets about n ticks.
export function niceStep(range, n) {
  const raw = range / Math.max(1, n);
  const p = Math.pow(10, Math.floor(Math.log10(raw || 1)));
  const m = raw / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 2.5 ? 2.5 : m <= 5 ? 5 : 10) * p;
}

// The canvas backing store follows devicePixelRatio so that text stays crisp.
export function fitCanvas(canvas, cssW, cssH) {
  const r = window.devicePixelRatio || 1;
  canvas.style.width = `${cssW}px`;
  canvas.style.height = `${cssH}px`;
  if (canvas.width !== Math.round(cssW * r) || canvas.height !== Math.round(cssH * r)) {
    canvas.width = Math.round(cssW * r);
    canvas.height = Math.round(cssH * r);
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(r, 0, 0, r, 0, 0);
  return ctx;
}

// Splits a decomposition key "vm,vcpu,class" into its parts. VM names may
// hold commas, the other fields never do, so the VM takes what is left.
export function splitKey(key, nparts) {
  const parts = key.split(',');
  if (parts.length <= nparts) return parts;
  const tail = parts.splice(parts.length - (nparts - 1));
  return [parts.join(','), ...tail];
}

// ---- colours -------------------------------------------------------------

// Hue of the i-th key. The first four follow CA's rule (21, then +91 mod
// 360) so that a legend agrees with a CA heatmap; after that each new key
// takes the middle of the widest gap left between the hues already given,
// so no two keys ever share a hue however many there are.
const hueCache = [21, 112, 203, 294];
export function distinctHue(i) {
  while (hueCache.length <= i) {
    const s = [...hueCache].sort((a, b) => a - b);
    let best = 0, gap = -1;
    for (let k = 0; k < s.length; k++) {
      const g = ((k + 1 < s.length ? s[k + 1] : s[0] + 360) - s[k]);
      if (g > gap + 1e-9) { gap = g; best = s[k] + g / 2; }
    }
    hueCache.push(Math.round((best % 360) * 100) / 100);
  }
  return hueCache[i];
}

// Colour of the i-th series on the dark background: its distinct hue, and
// from the 9th key on a second lightness so that neighbours differ twice.
export function keyColor(i) {
  const l = i < 8 ? 60 : i % 2 ? 72 : 48;
  return `hsl(${distinctHue(i)} 80% ${l}%)`;
}

// Relative luminance (WCAG) of an [r, g, b] in 0..255.
export function luminance([r, g, b]) {
  const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); };
  return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
}
export function contrast(a, b) {
  const [x, y] = [luminance(a), luminance(b)].sort((p, q) => q - p);
  return (x + 0.05) / (y + 0.05);
}

export function hsvRgb(hue, s, v) {
  const f = (n) => { const k = (n + hue / 60) % 6; return v - v * s * Math.max(0, Math.min(k, 4 - k, 1)); };
  return [f(5) * 255, f(3) * 255, f(1) * 255].map(Math.round);
}

// The plot background of heatmaps, and the colour of a cell of intensity t
// (0 < t <= 1) in a hue: rare cells stay at least 3:1 against the
// background (WCAG's floor for graphics), dense ones are the pure hue.
export const PLOT_BG = [14, 17, 22];
// Intensities are quantised to 1/256 and the colours cached: a heatmap
// asks for one per cell.
const cellCache = new Map();
export function cellRgb(hue, t) {
  const q = Math.max(1, Math.min(256, Math.round(t * 256)));
  const key = hue * 1000 + q;
  let c = cellCache.get(key);
  if (c) return c;
  const u = q / 256;
  c = hsvRgb(hue, 0.35 + 0.65 * u, 0.55 + 0.45 * u);
  for (let k = 0; k < 20 && contrast(c, PLOT_BG) < 3.2; k++) c = c.map((x) => Math.round(x + (255 - x) * 0.12));
  cellCache.set(key, c);
  return c;
}

// A round step for a byte axis: powers of two of a binary unit, so that
// ticks read 16 MiB, 32 MiB, never 19.1 MiB.
export function niceStepBinary(range, n) {
  const raw = range / Math.max(1, n);
  let s = 1;
  while (s * 2 <= raw) s *= 2;
  return s * 2 <= raw * 1.5 ? s * 2 : s;
}

// Sets a (possibly fractional) element's text only when it changed, so that
// a refresh does not disturb focus, selection or screen readers.
export function setText(el, text) { if (el.textContent !== text) el.textContent = text; }

// Downloads a Blob (or data URL) under name.
export function download(name, data, type) {
  const a = document.createElement('a');
  const url = typeof data === 'string' && data.startsWith('data:') ? data : URL.createObjectURL(new Blob([data], { type }));
  a.href = url; a.download = name; a.hidden = true;
  document.body.append(a); a.click(); a.remove();
  if (!url.startsWith('data:')) setTimeout(() => URL.revokeObjectURL(url), 1000);
}
