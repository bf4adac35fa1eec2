// Per-second values of an instrumentation, kept in the browser so that a
// refresh asks the agent only for the seconds it has not given yet.
//
// Honest newest values: the agent says up to which second its values are
// final ("final_until": every second before it is complete) and marks a
// data point still filling with "partial": true. Only final seconds are
// kept; a partial one is never shown as a value. An agent that does not
// say (older ones) is taken to be final up to two seconds ago, by its own
// clock when it reports one.
import { api } from './api.js';

const MAX_POINTS = 3600;   // the most the agent gives in one answer

export function finalFallback(nowSec) { return Math.floor(nowSec) - 2; }

export class SeriesStore {
  constructor(instr) {
    this.id = String(instr.id);
    this.gran = instr.granularity || 1;
    this.retention = instr['retention-time'] || 600;
    // the first whole second the instrumentation existed for: the one it
    // was created in counts only part of the second, so it is no value
    this.since = instr.crtime ? Math.ceil(instr.crtime / 1000) : 0;
    this.points = new Map();     // start_time -> value (final ones only)
    this.finalUntil = 0;         // seconds before this are final (what we know)
    this.partial = new Map();    // start_time -> { value, delay } not final yet
    this.requests = 0;           // answers asked for (tests, the benchmark)
    this.pointsFetched = 0;
  }

  // Takes one answer (an object or an array of them) into the store.
  take(res, nowSec) {
    const arr = Array.isArray(res) ? res : [res];
    let fu = null;
    for (const r of arr) if (r && typeof r.final_until === 'number') fu = Math.max(fu || 0, r.final_until);
    if (fu === null) fu = finalFallback(nowSec); else this.agentSaysFinal = true;
    this.finalUntil = Math.max(this.finalUntil, fu);
    for (const r of arr) {
      if (!r || typeof r.start_time !== 'number') continue;
      const t = r.start_time;
      this.pointsFetched++;
      if (t < this.since) continue;
      if (r.partial || t + this.gran > fu) {
        this.partial.set(t, { value: r.value, delay: r.delay });
        continue;
      }
      this.partial.delete(t);
      this.points.set(t, r.value);
    }
    // what is beyond the agent's retention is gone there too
    const oldest = this.finalUntil - this.retention - this.gran;
    for (const t of this.points.keys()) if (t < oldest) this.points.delete(t);
    for (const t of this.partial.keys()) if (t < this.finalUntil - this.gran * 2) this.partial.delete(t);
  }

  // The newest slot known to be final: the right edge of a live chart.
  // Before the first answer, by the browser's clock.
  newestFinal(nowSec) {
    const fu = this.finalUntil || finalFallback(nowSec);
    return Math.floor(fu / this.gran) * this.gran - this.gran;
  }

  // Makes sure every final slot in [from, to] (slot starts) is held, and
  // for a live chart (live: true) asks for what may have become final
  // since: the slots after the newest held up to the one ending now. A slot
  // the agent says is not final yet is asked for again on the next call.
  // Only the missing stretches are asked for.
  async ensure(from, to, nowSec, live) {
    const g = this.gran;
    from = Math.floor(from / g) * g;
    to = Math.floor(to / g) * g;
    // an agent that says what is final is asked up to the slot ending now;
    // one that does not, only up to what the fallback takes as final (a
    // request for seconds that would be dropped is a request wasted)
    const edge = this.agentSaysFinal ? Math.floor(nowSec / g) * g - g : Math.floor(finalFallback(nowSec) / g) * g - g;
    if (live) to = Math.max(to, edge);
    to = Math.min(to, edge);
    const lo = Math.max(from, Math.floor(nowSec) - this.retention + g, Math.ceil(this.since / g) * g);
    const runs = [];
    let run = null;
    for (let t = lo; t <= to; t += g) {
      if (!this.points.has(t)) { if (!run) run = [t, t]; else run[1] = t; } else if (run) { runs.push(run); run = null; }
    }
    if (run) runs.push(run);
    let n = 0;
    for (const [a, b] of runs) {
      for (let s = a; s <= b; s += MAX_POINTS * g) {
        const count = Math.min(MAX_POINTS, Math.floor((b - s) / g) + 1);
        this.requests++; n++;
        const res = await api.raw(this.id, { start_time: s, duration: g, ndatapoints: count });
        this.take(res, nowSec);
        // a final slot asked for and not given is known to be empty
        for (let t = s; t < s + count * g; t += g) if (t + g <= this.finalUntil && !this.points.has(t) && !this.partial.has(t)) this.points.set(t, null);
      }
    }
    return n;
  }

  known(t) { return this.points.has(t); }

  // [[t, value]] for every held slot in [from, to], oldest first (value null
  // for an empty one).
  range(from, to) {
    const out = [];
    for (let t = Math.floor(from / this.gran) * this.gran; t <= to; t += this.gran)
      if (this.points.has(t)) out.push([t, this.points.get(t)]);
    return out;
  }
}

// ---- numeric values -------------------------------------------------------

// Buckets [[lo, hi], count] of a value, whatever its decomposition: for a
// keyed one, every key's (or the keys in only) summed.
export function bucketsOf(value, only) {
  if (!value) return [];
  if (Array.isArray(value)) return value;
  const out = [];
  for (const [k, b] of Object.entries(value)) if (!only || only.has(k)) if (Array.isArray(b)) out.push(...b);
  return out;
}

// The p-th percentile (0..1) and the mean of a bucket list (each bucket's
// count at its middle; CA's arithmetic).
export function bucketStats(buckets) {
  let n = 0, sum = 0;
  for (const [[lo, hi], c] of buckets) { n += c; sum += c * (lo + hi) / 2; }
  if (!n) return { n: 0, avg: null, pct: () => null };
  const sorted = [...buckets].sort((a, b) => a[0][0] - b[0][0]);
  return {
    n, avg: sum / n,
    pct: (p) => {
      const want = p * n;
      let acc = 0;
      for (const [[lo, hi], c] of sorted) {
        if (acc + c >= want) return lo + (hi - lo) * Math.max(0, Math.min(1, (want - acc) / c));
        acc += c;
      }
      return sorted[sorted.length - 1][0][1];
    },
  };
}
