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
