// Drives kvmscope's web UI in headless Chromium against a running agent and
// a real vmload guest (vCPU 0: an interrupt every second at +250 ms; vCPU 1:
// one HLT a second; vCPU 2: one MMIO write a second; vCPU 3: random 4 KiB
// disk ops). Prints "ok DESC" / "not_ok DESC" for tests/integration/web_ui.sh.
// Each check names the finding of issue 19 it guards.
// Usage: node ui_test.mjs BASE_URL VM_NAME ARTIFACT_DIR USER_DATA_DIR DOCS_IMG_DIR
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { openLocalOnly, say } from './browser.mjs';

const [base, vmName, artifacts, userData, docsImg] = process.argv.slice(2);
const origin = new URL(base).origin;
const require = createRequire(import.meta.url);

const consoleErrors = [];
const { ctx, page, outside } = await openLocalOnly(userData, origin, { width: 1400, height: 900 });
page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
page.on('pageerror', (e) => consoleErrors.push(`uncaught: ${e.message}`));
const rawRequests = [];
page.on('request', (r) => { const u = r.url(); if (u.includes('/value/raw')) rawRequests.push({ u, at: Date.now() }); });

async function step(desc, fn) {
  try {
    const r = await fn();
    say(r !== false, desc + (typeof r === 'string' ? ` (${r})` : ''));
    return r;
  } catch (e) {
    say(false, `${desc}: ${String(e.message || e).split('\n')[0]}`);
    return null;
  }
}
const agent = (path, init) => page.evaluate(async ([p, i]) => { const r = await fetch(p, i); return r.status === 204 ? null : r.json(); }, [path, init || {}]);
const nowSec = () => Math.floor(Date.now() / 1000);
const panelSel = (id) => `section.panel[data-panel="${id}"]`;
const instrCount = async () => (await agent('/ca/instrumentations')).length;
// The UI's own instrumentations (idle-max 299) that share a shape with
// another: each would be a duplicate.
async function duplicates() {
  const list = (await agent('/ca/instrumentations')).filter((i) => i['idle-max'] === 299);
  const seen = new Map(), dups = [];
  for (const i of list) {
    const k = JSON.stringify([i.module, i.stat, i.decomposition, i.predicate, i.granularity]);
    if (seen.has(k)) dups.push(`#${seen.get(k)}=#${i.id}`); else seen.set(k, i.id);
  }
  return { n: list.length, dups };
}

try {
  // ---- the landing page is the host, not a form (finding "You land on a form")
  await step('/ loads the host overview, not the create form', async () => {
    await page.goto(`${base}/`);
    await page.waitForSelector('#conn.ok', { timeout: 10000 });
    await page.waitForSelector(`#vm-table tbody tr[data-vm="${vmName}"]`, { timeout: 15000 });
    const formVisible = await page.isVisible('#create-form');
    if (formVisible) throw new Error('the create form is on screen');
    return page.evaluate(() => location.hash);
  });
  const vm = (await agent('/ca/vms')).find((v) => v.name === vmName);
  await step(`the agent lists VM ${vmName} with 4 vCPUs`, async () => vm && vm.vcpus.length === 4);

  await step('each VM has sparklines of exits, irqs, disk and NIC; exits and irqs carry data', async () => {
    await page.waitForFunction((n) => {
      const r = document.querySelector(`#vm-table tr[data-vm="${n}"]`);
      const s = (id) => r && r.querySelector(`canvas[data-spark="${id}"]`);
      return s('exits') && Number(s('exits').dataset.max) > 0 && Number(s('irqs').dataset.max) > 0 && s('disk') && s('nic');
    }, vmName, { timeout: 20000 });
    return page.$eval(`#vm-table tr[data-vm="${vmName}"]`, (r) => [...r.querySelectorAll('canvas.spark')].map((c) => `${c.dataset.spark} max ${c.dataset.max}`).join(', '));
  });

  await step('the kvmstat table lists every vCPU with its tid', async () => {
    const got = await page.$$eval(`#kvmstat-table tbody tr[data-vm="${vmName}"]`, (rows) => rows.map((r) => `${r.dataset.vcpu}:${r.children[2].textContent}`).sort());
    const want = vm.vcpus.map((c) => `${c.index}:${c.tid}`).sort();
    if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`rows ${got}, want ${want}`);
    return got.join(' ');
  });

  // ---- the latest second does not lie (finding 1, the UI's half): a vCPU
  // doing 1 HLT and one doing 1 MMIO a second read 1, never 0, second after
  // second, whatever the page's phase.
  await step('kvmstat never shows a partial second: HLT and MMIO vCPUs read >= 1 exit/s in 25 looks over 3 s', async () => {
    // the first final second of the table's instrumentations: before it the
    // cells say "–" (not known), never 0
    await page.waitForFunction((n) => { const r = document.querySelector(`#kvmstat-table tr[data-vm="${n}"][data-vcpu="1"]`); return r && r.children[4].textContent !== '–'; }, vmName, { timeout: 10000 });
    // 25 looks, 120 ms apart: some fall in the first 0.2 s after a second
    // turns, when an unfinished second used to read 0
    const seen = [];
    for (let i = 0; i < 25; i++) {
      const r = await page.evaluate((n) => {
        const cell = (v, col) => Number(document.querySelector(`#kvmstat-table tr[data-vm="${n}"][data-vcpu="${v}"]`).children[col].textContent);
        return [cell(1, 4), cell(2, 8), cell(0, 10)];   // haltx of vCPU 1, mmiox of vCPU 2, irqs of vCPU 0
      }, vmName);
      seen.push(r.join('/'));
      if (r.some((x) => !(x >= 1))) throw new Error(`haltx/mmiox/irqs ${seen.join(' ')}: a zero is a partial second`);
      await page.waitForTimeout(120);
    }
    return `haltx/mmiox/irqs ${[...new Set(seen)].join(' ')} in ${seen.length} looks`;
  });
  await step('the exits history sparkline of a vCPU is drawn', async () => {
    await page.waitForFunction((n) => Number(document.querySelector(`#kvmstat-table tr[data-vm="${n}"][data-vcpu="2"] canvas.spark`).dataset.max) >= 1, vmName, { timeout: 5000 });
  });
  await step('zeros in the kvmstat table keep 4.5:1 contrast (was 2.3:1)', async () => {
    const ratio = await page.evaluate(() => {
      const td = document.querySelector('#kvmstat-table td.zero');
      if (!td) return null;
      const p = (s) => s.match(/\d+/g).slice(0, 3).map(Number);
      const L = (c) => { const f = (x) => { x /= 255; return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; }; return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); };
      let el = td, bg = 'rgba(0, 0, 0, 0)';
      while (el && /rgba\(0, 0, 0, 0\)|transparent/.test(bg)) { bg = getComputedStyle(el).backgroundColor; el = el.parentElement; }
      const a = L(p(getComputedStyle(td).color)), b = L(p(bg));
      return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    });
    if (ratio === null) throw new Error('no zero cell to look at');
    if (ratio < 4.5) throw new Error(`contrast ${ratio.toFixed(2)}:1`);
    return `${ratio.toFixed(2)}:1`;
  });
  await step('the fleet card says this agent aggregates no hosts (GET /ca/peers is [])', async () => {
    await page.waitForFunction(() => /aggregates no other hosts/.test(document.querySelector('#fleet-card').textContent), null, { timeout: 10000 });
  });
  // a minute's window: the fresh guest's history fills it
  await page.selectOption('#window', '60');
  await page.waitForTimeout(1200);
  await page.screenshot({ path: `${artifacts}/web-overview.png` });

  // The fleet's hosts in the shape another branch is moving to: a mock of
  // that answer only (this agent has no bus), through the page's router.
  await step('fleet hosts in the {"bus", "hosts"} shape are listed with their state (mocked /ca/peers answer)', async () => {
    await page.route('**/ca/peers', (r) => r.fulfill({ status: 200, contentType: 'application/json',
      body: JSON.stringify({ bus: { url: 'nats://127.0.0.1:4222', state: 'connected' }, hosts: [{ host: 'kvm-a', state: 'up', last_seen: nowSec() }, { host: 'kvm-b', state: 'down', last_error: 'timed out' }] }) }));
    await page.evaluate(() => { window.kvmscope.overview.peersAt = 0; });
    await page.waitForSelector('#peer-table tr[data-host="kvm-b"]', { timeout: 10000 });
    const t = await page.textContent('#peer-table tbody');
    await page.unroute('**/ca/peers');
    if (!/kvm-a\s*up/.test(t) || !/down/.test(t) || !/timed out/.test(t)) throw new Error(t);
    return t.replace(/\s+/g, ' ').trim();
  });
  await step('a 404 from /ca/peers hides the fleet card without an error (mocked answer)', async () => {
    await page.route('**/ca/peers', (r) => r.fulfill({ status: 404, contentType: 'application/json', body: '{"code":"ResourceNotFound","message":"no such resource"}' }));
    await page.evaluate(() => { window.kvmscope.overview.peersAt = 0; });
    await page.waitForSelector('#fleet-card', { state: 'hidden', timeout: 10000 });
    await page.unroute('**/ca/peers');
    // the browser logs the mocked 404 itself: not the page's error
    for (let i = consoleErrors.length - 1; i >= 0; i--) if (/404/.test(consoleErrors[i])) consoleErrors.splice(i, 1);
  });

  // ---- click a VM: its own page, every chart scoped to it
    await step('clicking the VM opens its page with exits, latency, irqs, disk, CR3 and NIC charts', async () => {
    await page.click(`#vm-table tr[data-vm="${vmName}"] a.vmlink`);
    await page.waitForFunction(() => document.querySelectorAll('#view-vm section.panel').length === 8, null, { timeout: 15000 });
    return page.evaluate(() => location.hash);
  });
  await step('every chart of the VM page is scoped to the VM by a predicate', async () => {
    const ids = await page.$$eval('#view-vm section.panel', (s) => s.map((x) => x.dataset.id));
    if (ids.length !== 8) throw new Error(`${ids.length} charts`);
    for (const id of ids) {
      const i = await agent(`/ca/instrumentations/${id}`);
      if (JSON.stringify(i.predicate) !== JSON.stringify({ eq: ['vm', vmName] })) throw new Error(`#${id}: ${JSON.stringify(i.predicate)}`);
    }
    return `${ids.length} instrumentations with vm == ${vmName}`;
  });
  await step('the exits chart ends at the newest final second and shows MMIO and HLT', async () => {
    await page.waitForSelector(`${panelSel('exits')}[data-ready="1"]`, { timeout: 15000 });
    await page.waitForFunction((s) => { const l = document.querySelector(`${s} .legend`).textContent; return /MMIO/.test(l) && /HLT/.test(l); }, panelSel('exits'), { timeout: 15000 });
    const newest = Number(await page.getAttribute(panelSel('exits'), 'data-newest'));
    const lag = nowSec() - newest;
    if (lag < 2 || lag > 6) throw new Error(`newest second ${lag} s ago`);
    const hlt = await page.$eval(`${panelSel('exits')} .legend [data-key="HLT"] .kval`, (e) => e.textContent);
    if (!(Number(hlt) >= 1)) throw new Error(`legend HLT ${hlt}: a partial second`);
    return `newest ${lag} s ago, HLT ${hlt}`;
  });

  // The contract of final_until: a mocked agent answer marks its newest
  // point partial; the chart must not draw it.
  await step('a point the agent marks partial (final_until) is not drawn (mocked raw answer)', async () => {
    const id = await page.getAttribute(panelSel('irqvec'), 'data-id');
    let marked = null;
    await page.route(`**/ca/instrumentations/${id}/value/raw*`, async (route) => {
      const res = await route.fetch();
      let body = await res.json();
      const arr = Array.isArray(body) ? body : [body];
      const last = arr[arr.length - 1];
      const fu = last.start_time;   // the newest point is not final
      for (const p of arr) p.final_until = fu;
      last.partial = true; last.delay = 1;
      last.value = { '0x30': 999 };
      marked = last.start_time;
      await route.fulfill({ response: res, body: JSON.stringify(body) });
    });
    await page.evaluate(() => { const x = window.kvmscope.vmPage.charts.get('irqvec'); x.store.points.clear(); x.store.finalUntil = 0; x.visible = true; return x.refresh(); });
    await page.unroute(`**/ca/instrumentations/${id}/value/raw*`);
    const st = await page.evaluate(() => { const x = window.kvmscope.vmPage.charts.get('irqvec'); return { newest: x.el.dataset.newest, has999: [...x.store.points.values()].some((v) => v && v['0x30'] === 999), fu: x.store.finalUntil }; });
    if (st.has999 || Number(st.newest) >= marked) throw new Error(`partial point kept: ${JSON.stringify(st)} marked ${marked}`);
    return `newest drawn ${st.newest} < partial ${marked}`;
  });

  // ---- latency heatmaps readable: log scale, y range, intensity legend
  const lat = panelSel('latency');
  await step('the exit latency heatmap is on a log scale by default, ticks in decades', async () => {
    await page.waitForSelector(`${lat}[data-ready="1"]`, { timeout: 15000 });
    const d = await page.$eval(`${lat} canvas.plot`, (c) => ({ ...c.dataset }));
    if (d.log !== '1') throw new Error('linear');
    return d.yTicks;
  });
  await step('the intensity legend gives the count of the lightest and densest cell', async () => {
    const t = await page.$eval(`${lat} .iscale`, (e) => [e.querySelector('.ilo').textContent, e.querySelector('.ihi').textContent, e.textContent]);
    if (!(Number(t[1].replace(/[^\d.]/g, '')) > 0)) throw new Error(t[2]);
    return `${t[0]} .. ${t[1]}`;
  });
  await step('a y range set by hand is what the axis shows', async () => {
    await page.fill(`${lat} input[aria-label^="y min"]`, '1000');
    await page.fill(`${lat} input[aria-label^="y max"]`, '100000000');
    await page.press(`${lat} input[aria-label^="y max"]`, 'Enter');
    await page.waitForFunction((s) => { const d = document.querySelector(`${s} canvas.plot`).dataset; return Number(d.ymin) === 1000 && Number(d.ymax) === 1e8; }, lat, { timeout: 5000 });
    return page.$eval(`${lat} canvas.plot`, (c) => c.dataset.yTicks);
  });
  await step('rare cells keep 3:1 contrast against the plot (was near-white 1.2:1)', async () => {
    const r = await page.evaluate(() => {
      const { cellRgb, contrast, PLOT_BG, distinctHue } = window.kvmscopeUtil;
      let worst = 99;
      for (let k = 0; k < 16; k++) for (const t of [0.01, 0.1, 0.5, 1]) worst = Math.min(worst, contrast(cellRgb(distinctHue(k), t), PLOT_BG));
      return worst;
    });
    if (r < 3) throw new Error(`worst ${r.toFixed(2)}:1`);
    return `worst ${r.toFixed(2)}:1`;
  });
  await step('avg and p95 overlays are drawn with a casing (visible on any cell)', async () => {
    await page.fill(`${lat} input[aria-label^="y min"]`, '');
    await page.fill(`${lat} input[aria-label^="y max"]`, '');
    await page.press(`${lat} input[aria-label^="y max"]`, 'Enter');
    await page.check(`${lat} input[data-prop="avg"]`);
    await page.check(`${lat} input[data-prop="p95"]`);
    const count = (s) => {
      const c = document.querySelector(`${s} canvas.plot`);
      const r = window.devicePixelRatio || 1;
      const d = c.dataset;
      const img = c.getContext('2d').getImageData(Math.round(d.plotX * r), Math.round(d.plotY * r), Math.round(d.plotW * r), Math.round(d.plotH * r)).data;
      let cyan = 0, pink = 0;
      for (let i = 0; i < img.length; i += 4) {
        if (img[i] < 60 && img[i + 1] > 180 && img[i + 2] > 220) cyan++;
        if (img[i] > 220 && img[i + 1] < 120 && img[i + 2] > 220) pink++;
      }
      return { cyan, pink };
    };
    // a line needs two seconds with exits
    await page.waitForFunction(([s, f]) => { const r = eval(f)(s); return r.cyan > 0 && r.pink > 0; }, [lat, count.toString()], { timeout: 8000 }).catch(() => {});
    const px = await page.evaluate(([s, f]) => eval(f)(s), [lat, count.toString()]);
    if (!px.cyan || !px.pink) throw new Error(JSON.stringify(px));
    return JSON.stringify(px);
  });

  // ---- shared crosshair
  await step('hovering one chart draws the crosshair on the others at the same time', async () => {
    const box = await page.locator(`${lat} canvas.plot`).boundingBox();
    await page.mouse.move(box.x + box.width * 0.7, box.y + 60);
    await page.waitForTimeout(100);
    // the charts on screen (off-screen ones are not redrawn until seen)
    const x = await page.evaluate(() => window.kvmscope.vmPage.all().filter((c) => c.visible).map((c) => (c.xhair.hidden ? null : parseFloat(c.xhair.style.left))));
    const slotPx = await page.$eval(`${lat} canvas.plot`, (c) => Number(c.dataset.plotW) / Number(c.dataset.n));
    const shown = x.filter((v) => v !== null);
    if (shown.length < 2 || shown.length !== x.length) throw new Error(`crosshair on ${shown.length} of ${x.length} charts on screen`);
    if (Math.max(...shown) - Math.min(...shown) > slotPx + 1) throw new Error(`at ${shown}`);
    return `${shown.length} charts at x ${Math.round(shown[0])}`;
  });

  await step('a tooltip left open is redrawn with what is under the pointer after a refresh (it went stale)', async () => {
    const box = await page.locator(`${lat} canvas.plot`).boundingBox();
    const d = await page.$eval(`${lat} canvas.plot`, (c) => ({ x: +c.dataset.plotX, y: +c.dataset.plotY, w: +c.dataset.plotW }));
    const mx = d.x + d.w * 0.955;   // mid-column, not on a boundary
    await page.mouse.move(box.x + mx, box.y + d.y + 40);
    await page.waitForSelector(`${lat} .tip:not([hidden]) .dbody`, { timeout: 3000 });
    const t1 = await page.$eval(`${lat} .tip .dbody`, (b) => b.dataset.start);
    await page.waitForFunction(([s, t]) => document.querySelector(`${s} .tip .dbody`).dataset.start !== t, [lat, t1], { timeout: 5000 });
    const r = await page.evaluate(([s, x]) => {
      const c = document.querySelector(`${s} canvas.plot`).dataset;
      const col = Math.floor(((x - c.plotX) / c.plotW) * c.n);
      return { tip: document.querySelector(`${s} .tip .dbody`).dataset.start, under: String(Number(c.start) + col) };
    }, [lat, mx]);
    if (r.tip !== r.under) throw new Error(`tip at ${r.tip}, pointer over ${r.under}`);
    return `${t1} -> ${r.tip}`;
  });
  await step('the window offers nothing longer than the instrumentations keep (was "last 1 h" over 1 min)', async () => {
    const opts = await page.$$eval('#window option', (o) => o.map((x) => Number(x.value)).filter(Boolean));
    const ret = (await agent(`/ca/instrumentations/${await page.getAttribute(lat, 'data-id')}`))['retention-time'];
    if (Math.max(...opts) > ret) throw new Error(`options ${opts}, retention ${ret}`);
    const n = await page.$eval(`${lat} canvas.plot`, (c) => Number(c.dataset.n));
    const w = await page.evaluate(() => window.kvmscope.tm.window);
    if (n !== w) throw new Error(`the chart shows ${n} s of a ${w} s window`);
    return `options ${opts.join(',')} s, retention ${ret} s, chart ${n} s`;
  });
  // ---- pinned details do not drift: pinned in data, not pixels
  const sub = panelSel('irqsub');
  await step('a pinned cell of the subsecond heatmap stays the same cell over refreshes (+250 ms line)', async () => {
    await page.locator(sub).scrollIntoViewIfNeeded();
    await page.waitForSelector(`${sub}[data-ready="1"]`, { timeout: 15000 });
    const pos = await page.evaluate((s) => {
      const ch = window.kvmscope.vmPage.charts.get('irqsub');
      const g = ch.grid;
      // the newest column with a count in the row of +250 ms
      const row = Math.floor(g.sc.f(255) * g.rows);
      for (let col = g.n - 1; col >= 0; col--) if (g.totals[col * g.rows + row] > 0) return { col, row, n: g.n, rows: g.rows, ...ch.canvas.dataset };
      return null;
    }, sub);
    if (!pos) throw new Error('no counted cell');
    const box = await page.locator(`${sub} canvas.plot`).boundingBox();
    await page.mouse.click(box.x + Number(pos.plotX) + ((pos.col + 0.5) / pos.n) * Number(pos.plotW), box.y + Number(pos.plotY) + (1 - (pos.row + 0.5) / pos.rows) * Number(pos.plotH));
    await page.waitForSelector(`${sub} .details.open .dbody`, { timeout: 5000 });
    const d1 = await page.$eval(`${sub} .details .dbody`, (b) => ({ ...b.dataset }));
    if (!(Number(d1.bucketMin) <= 255 && Number(d1.bucketMax) >= 250)) throw new Error(`bucket ${d1.bucketMin}..${d1.bucketMax}, want the +250 ms line`);
    await page.waitForTimeout(2500);
    const d2 = await page.$eval(`${sub} .details .dbody`, (b) => ({ ...b.dataset }));
    if (d1.start !== d2.start || d1.bucketMin !== d2.bucketMin) throw new Error(`drifted: ${JSON.stringify(d1)} -> ${JSON.stringify(d2)}`);
    return `second ${d2.start}, ${Number(d1.bucketMin).toFixed(1)}..${Number(d1.bucketMax).toFixed(1)} ms, count ${d2.total}`;
  });

  // ---- keyboard
  await step('a chart has a descriptive label and arrow keys move between cells; Enter pins, Esc closes', async () => {
    const label = await page.getAttribute(`${sub} canvas.plot`, 'aria-label');
    if (!/Arrow keys/.test(label) || label.length < 50) throw new Error(label);
    await page.focus(`${sub} canvas.plot`);
    await page.keyboard.press('Escape');
    await page.keyboard.press('End');
    await page.keyboard.press('ArrowLeft');
    await page.keyboard.press('ArrowUp');
    await page.keyboard.press('Enter');
    await page.waitForSelector(`${sub} .details.open`, { timeout: 3000 });
    const live = await page.textContent(`${sub} .sr-only`);
    await page.keyboard.press('Escape');
    if (await page.$(`${sub} .details.open`)) throw new Error('Esc left the details open');
    return `announced "${live.slice(0, 40)}…"`;
  });
  await step('the legend keeps focus across refreshes (it was rebuilt every second)', async () => {
    const sel = `${panelSel('exits')} .legend button[data-key="MMIO"]`;
    await page.locator(panelSel('exits')).scrollIntoViewIfNeeded();
    await page.focus(sel);
    await page.evaluate((s) => { document.querySelector(s).__mark = 1; }, sel);
    await page.waitForTimeout(2500);
    const same = await page.evaluate(() => document.activeElement && document.activeElement.__mark === 1);
    if (!same) throw new Error(`focus on ${await page.evaluate(() => document.activeElement && document.activeElement.outerHTML.slice(0, 80))}`);
  });
  await step('Space on a focused button presses it and does not pause everything', async () => {
    const sel = `${panelSel('exits')} .legend button[data-key="MMIO"]`;
    await page.focus(sel);
    await page.keyboard.press(' ');
    await page.waitForTimeout(200);
    const paused = await page.evaluate(() => !window.kvmscope.tm.live);
    const hidden = await page.evaluate(() => window.kvmscope.vmPage.charts.get('exits').view.hidden.join());
    await page.keyboard.press(' ');   // and back
    if (paused) throw new Error('Space paused the page');
    if (hidden !== 'MMIO') throw new Error(`the button was not pressed (hidden: ${hidden})`);
  });
  await step('Esc closes the help dialog', async () => {
    await page.focus('body');
    await page.keyboard.press('?');
    await page.waitForSelector('#help[open]', { timeout: 2000 });
    await page.keyboard.press('Escape');
    await page.waitForSelector('#help:not([open])', { state: 'attached', timeout: 2000 });
  });

  // ---- layout
  await step('no y-axis title over a tick label, no time label clipped', async () => {
    const r = await page.$$eval('#view-vm canvas.plot[data-y-tick-left]', (cs) => ({ n: cs.length, bad: cs.filter((c) => Number(c.dataset.yTickLeft) < 14 || Number(c.dataset.xLabelMax) > Number(c.dataset.cssWidth)).map((c) => c.closest('section').dataset.panel) }));
    if (r.n < 6) throw new Error(`only ${r.n} charts drawn to look at`);
    if (r.bad.length) throw new Error(`on ${r.bad}`);
    return `${r.n} charts`;
  });
  await step('byte axes tick in whole binary units (no 19.1 MiB)', async () => {
    const off = panelSel('diskoff');
    await page.locator(off).scrollIntoViewIfNeeded();
    await page.waitForSelector(`${off}[data-ready="1"]`, { timeout: 15000 });
    const ticks = await page.$eval(`${off} canvas.plot`, (c) => c.dataset.yTicks.split('|'));
    const bad = ticks.filter((t) => /\d\.\d/.test(t));
    if (bad.length || ticks.length < 3) throw new Error(ticks.join(' '));
    return ticks.join(' ');
  });

  // ---- drag to zoom, absolute ranges, scroll back while paused
  await page.locator(lat).scrollIntoViewIfNeeded();
  await step('dragging across the latency heatmap zooms every chart to that time', async () => {
    await page.fill(`${lat} input[aria-label^="y min"]`, '');
    await page.fill(`${lat} input[aria-label^="y max"]`, '');
    await page.press(`${lat} input[aria-label^="y max"]`, 'Enter');
    const box = await page.locator(`${lat} canvas.plot`).boundingBox();
    const d = await page.$eval(`${lat} canvas.plot`, (c) => ({ x: +c.dataset.plotX, w: +c.dataset.plotW }));
    await page.mouse.move(box.x + d.x + d.w * 0.8, box.y + 80);
    await page.mouse.down();
    await page.mouse.move(box.x + d.x + d.w * 0.9, box.y + 90, { steps: 5 });
    await page.mouse.move(box.x + d.x + d.w * 0.99, box.y + 90, { steps: 5 });
    await page.mouse.up();
    await page.waitForFunction(() => !window.kvmscope.tm.live, null, { timeout: 3000 });
    const tm = await page.evaluate(() => window.kvmscope.tm);
    const span = tm.to - tm.from;
    if (span < 5 || span > 20) throw new Error(`zoomed to ${span} s of a 60 s window`);
    await page.waitForFunction((s) => Number(document.querySelector(`${s} canvas.plot`).dataset.n) <= 20, lat, { timeout: 5000 });
    const onScreen = () => [...new Set(window.kvmscope.vmPage.all().filter((c) => c.visible).map((c) => c.canvas.dataset.start))];
    await page.waitForFunction(([f, fn]) => { const s = eval(fn)(); return s.length === 1 && Number(s[0]) === f; }, [tm.from, onScreen.toString()], { timeout: 5000 }).catch(() => {});
    const starts = await page.evaluate(onScreen);
    if (starts.length !== 1 || Number(starts[0]) !== tm.from) throw new Error(`charts start at ${starts}, range from ${tm.from}`);
    if (!/from=\d+&to=\d+/.test(await page.evaluate(() => location.hash))) throw new Error('the URL does not hold the range');
    return `${span} s from ${tm.from}`;
  });
  await page.waitForTimeout(800);
  await page.screenshot({ path: `${artifacts}/web-latency-zoom.png`, clip: await page.locator(lat).boundingBox() });
  await step('while paused, [ scrolls back half a window and the older seconds are fetched', async () => {
    const a = await page.evaluate(() => window.kvmscope.tm);
    await page.evaluate(() => document.activeElement && document.activeElement.blur());
    await page.keyboard.press('[');
    await page.waitForFunction((f) => window.kvmscope.tm.from < f, a.from, { timeout: 3000 });
    const b = await page.evaluate(() => window.kvmscope.tm);
    // the chart is redrawn for the range, and holds every second of it the
    // instrumentation existed for
    await page.waitForFunction((f) => {
      const c = window.kvmscope.vmPage.charts.get('latency');
      return c.canvas.dataset.start === String(f) && c.store.points.has(Math.max(f, c.store.since));
    }, b.from, { timeout: 5000 });
    return `${a.from}..${a.to} -> ${b.from}..${b.to}`;
  });
  await step('an absolute range typed in is what every chart shows', async () => {
    const to = nowSec() - 20, from = to - 90;
    const loc = (t) => { const d = new Date(t * 1000); const p = (x) => String(x).padStart(2, '0'); return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`; };
    await page.fill('#range-from', loc(from));
    await page.fill('#range-to', loc(to));
    await page.click('#range-form button[type="submit"]');
    await page.waitForFunction(([f, t]) => window.kvmscope.tm.from === f && window.kvmscope.tm.to === t, [from, to], { timeout: 3000 });
    await page.waitForFunction((f) => document.querySelector('section.panel[data-panel="exits"] canvas.plot').dataset.start === String(f), from, { timeout: 5000 });
    return `${from}..${to}`;
  });

  // ---- state in the URL: window, selections, colour mode, scale, pause
  await step('a reload keeps the range, the selected keys, the colour mode and the scale', async () => {
    await page.click('#pause');   // live again
    await page.selectOption('#window', '120');
    await page.locator(lat).scrollIntoViewIfNeeded();
    await page.click(`${lat} .legend button[data-key="MMIO"]`);
    await page.selectOption(`${lat} select[aria-label="key colouring"]`, 'isolate');
    await page.uncheck(`${lat} input[data-prop="log"]`);
    await page.selectOption(`${lat} select[aria-label="intensity"]`, 'linear');
    await page.click('#pause');   // paused at this moment
    const tm = await page.evaluate(() => window.kvmscope.tm);
    const hash = await page.evaluate(() => location.hash);
    await page.reload();
    await page.waitForFunction(() => window.kvmscope.vmPage && window.kvmscope.vmPage.charts.get('latency'), null, { timeout: 15000 });
    const st = await page.evaluate(() => { const c = window.kvmscope.vmPage.charts.get('latency'); return { tm: window.kvmscope.tm, view: c.view }; });
    if (st.tm.live || st.tm.from !== tm.from || st.tm.to !== tm.to) throw new Error(`time ${JSON.stringify(st.tm)}, want ${JSON.stringify(tm)}`);
    if (st.view.sel.join() !== 'MMIO' || st.view.mode !== 'isolate' || st.view.log !== false || st.view.coloring !== 'linear') throw new Error(JSON.stringify(st.view));
    if (!(await page.isChecked(`${lat} input[data-prop="avg"]`))) throw new Error('the avg overlay was lost');
    return hash.slice(0, 90);
  });
  await step('the VM page\'s panels are in the URL: one turned off stays off after a reload', async () => {
    await page.uncheck('fieldset.ptoggles input[value="nic"]');
    await page.waitForFunction(() => /show=/.test(location.hash), null, { timeout: 2000 });
    await page.reload();
    await page.waitForFunction(() => document.querySelectorAll('#view-vm section.panel').length === 7, null, { timeout: 15000 });
    if (await page.$(panelSel('nic'))) throw new Error('the NIC chart came back');
    await page.check('fieldset.ptoggles input[value="nic"]');
  });
  await step('reloads and revisits made no duplicate instrumentations', async () => {
    await page.goto(`${base}/#/host`);
    await page.waitForSelector(`#vm-table tr[data-vm="${vmName}"]`, { timeout: 10000 });
    await page.goto(`${base}/#/vm/${vmName}`);
    await page.waitForFunction(() => document.querySelectorAll('#view-vm section.panel').length >= 7, null, { timeout: 15000 });
    const d = await duplicates();
    if (d.dups.length) throw new Error(`duplicates ${d.dups}`);
    return `${d.n} of the UI's own, each of its own shape`;
  });
  await page.click('#pause').catch(() => {});
  await page.evaluate(() => { if (!window.kvmscope.tm.live) document.querySelector('#pause').click(); });
  await page.waitForTimeout(1500);
  await page.screenshot({ path: `${artifacts}/web-vm.png` });

  // ---- only visible charts refresh, incrementally
  await step('only charts on screen refresh, each asking only for its newest seconds', async () => {
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.waitForTimeout(1500);
    const vis = await page.evaluate(() => window.kvmscope.vmPage.all().map((c) => [c.id, c.visible]));
    const from = Date.now();
    await page.waitForTimeout(3200);
    const reqs = rawRequests.filter((r) => r.at >= from).map((r) => new URL(r.u));
    const byId = {};
    for (const u of reqs) { const id = u.pathname.split('/')[3]; (byId[id] = byId[id] || []).push(Number(u.searchParams.get('ndatapoints'))); }
    const offIds = vis.filter((v) => !v[1]).map((v) => v[0]);
    const onIds = vis.filter((v) => v[1]).map((v) => v[0]);
    if (!offIds.length) throw new Error('every chart is on screen');
    const offAsked = offIds.filter((id) => byId[id]);
    if (offAsked.length) throw new Error(`off-screen charts ${offAsked} refreshed`);
    const big = Object.values(byId).flat().filter((n) => n > 5);
    if (big.length) throw new Error(`re-downloads of ${big} points`);
    if (!onIds.some((id) => byId[id])) throw new Error('no chart on screen refreshed');
    return `on screen ${onIds.length} (asked ${onIds.map((id) => (byId[id] || []).length).join(',')}), off ${offIds.length} (asked 0)`;
  });

  // ---- export
  await page.locator(panelSel('exits')).scrollIntoViewIfNeeded();
  const ex = panelSel('exits');
  for (const [kind, ext] of [['png', 'png'], ['csv', 'csv'], ['json', 'json']]) {
    await step(`export ${kind.toUpperCase()} downloads the chart`, async () => {
      await page.click(`${ex} details.export > summary`);
      const [dl] = await Promise.all([page.waitForEvent('download', { timeout: 5000 }), page.click(`${ex} button[data-export="${kind}"]`)]);
      const path = `${artifacts}/export.${ext}`;
      await dl.saveAs(path);
      await page.click(`${ex} details.export > summary`);
      const buf = readFileSync(path);
      if (kind === 'png' && buf.readUInt32BE(0) !== 0x89504e47) throw new Error('not a PNG');
      if (kind === 'csv') {
        const lines = buf.toString().trim().split('\n');
        const hlt = lines.filter((l) => /,HLT,/.test(l));
        if (!/^start_time,reason/.test(lines[0]) || !hlt.length) throw new Error(lines.slice(0, 3).join(' / '));
        // a second of the CSV agrees with the agent
        const [t, , , , v] = hlt[hlt.length - 1].split(',');
        const id = await page.getAttribute(ex, 'data-id');
        const a = await agent(`/ca/instrumentations/${id}/value/raw?start_time=${t}&duration=1`);
        if (a.value.HLT !== Number(v)) throw new Error(`CSV ${t}: HLT ${v}, agent ${a.value.HLT}`);
        return `${lines.length - 1} rows, HLT at ${t}: ${v}`;
      }
      if (kind === 'json') { const j = JSON.parse(buf); if (!j.points.length || !j.instrumentation.id) throw new Error('empty'); return `${j.points.length} points`; }
      return `${buf.length} bytes`;
    });
  }
  await step('"copy as curl" gives a command that returns the chart\'s data', async () => {
    await page.click(`${ex} details.export > summary`);
    await page.click(`${ex} button[data-export="curl"]`);
    const cmd = await page.inputValue(`${ex} input.curl`);
    await page.click(`${ex} details.export > summary`);
    const m = cmd.match(/^curl -s '([^']+)'$/);
    if (!m) throw new Error(cmd);
    const out = JSON.parse(execFileSync('curl', ['-s', m[1]]).toString());
    if (!Array.isArray(out) || !out.length) throw new Error(`curl gave ${JSON.stringify(out).slice(0, 80)}`);
    return `${out.length} points`;
  });

  // ---- colours
  await step('colours stay distinct for 40 keys (hues were +91°: key 5 = key 1)', async () => {
    const r = await page.evaluate(() => {
      const { distinctHue, keyColor } = window.kvmscopeUtil;
      const hues = Array.from({ length: 40 }, (_, i) => distinctHue(i));
      let minSep = 360;
      for (let i = 0; i < hues.length; i++) for (let j = i + 1; j < hues.length; j++) { const d = Math.abs(hues[i] - hues[j]); minSep = Math.min(minSep, Math.min(d, 360 - d)); }
      const colors = new Set(Array.from({ length: 40 }, (_, i) => keyColor(i)));
      return { first: hues.slice(0, 5), minSep, distinct: colors.size, ca: hues.slice(0, 4).join() === '21,112,203,294' };
    });
    if (!r.ca) throw new Error(`the first hues are not CA's: ${r.first}`);
    if (r.distinct !== 40 || r.minSep < 4) throw new Error(JSON.stringify(r));
    return `first ${r.first.join(',')}; min separation ${r.minSep}°`;
  });
  await step('a key keeps its colour when others come and go', async () => {
    const c1 = await page.$eval(`${ex} .legend [data-key="MMIO"] i`, (i) => i.style.background);
    await page.click(`${ex} .legend button[data-key="HLT"]`);
    await page.waitForTimeout(300);
    const c2 = await page.$eval(`${ex} .legend [data-key="MMIO"] i`, (i) => i.style.background);
    await page.click(`${ex} .legend button[data-key="HLT"]`);
    if (c1 !== c2) throw new Error(`${c1} -> ${c2}`);
    return c1;
  });

  // ---- analytics: ready-made views scoped to a VM, percent of total, no duplicates
  await page.goto(`${base}/#/analytics`);
  await page.waitForSelector('#create-form', { timeout: 10000 });
  await step('the Analytics tab shows no panel for the UI\'s own instrumentations', async () => {
    await page.waitForTimeout(1500);
    const ids = await page.$$eval('#panels section.panel', (s) => s.map((x) => x.dataset.id));
    const mine = [];
    for (const id of ids) if ((await agent(`/ca/instrumentations/${id}`))['idle-max'] === 299) mine.push(id);
    if (mine.length) throw new Error(`panels for #${mine}`);
    return `${ids.length} panels, none of the UI's own`;
  });
  const beforeViews = await instrCount();
  await step('"Guest processes" is scoped to the chosen VM and keyed by CR3', async () => {
    await page.selectOption('#view-vm-sel', vmName);
    await page.click('#view-procs-btn');
    await page.waitForSelector('#panels section.panel[data-key^="procs-"]', { timeout: 10000 });
    const id = await page.getAttribute('#panels section.panel[data-key^="procs-"]', 'data-id');
    const i = await agent(`/ca/instrumentations/${id}`);
    if (JSON.stringify(i.predicate) !== JSON.stringify({ eq: ['vm', vmName] }) || i.decomposition.join() !== 'mmuctx') throw new Error(JSON.stringify(i));
    return `#${id} ${JSON.stringify(i.predicate)}`;
  });
  await step('"What runs when" plots one VM\'s vCPUs, not vCPU indexes across VMs', async () => {
    await page.click('#view-when-btn');
    await page.waitForFunction(() => document.querySelectorAll('#panels section.panel[data-key^="when-"]').length === 2, null, { timeout: 10000 });
    const ids = await page.$$eval('#panels section.panel[data-key^="when-"]', (s) => s.map((x) => x.dataset.id));
    for (const id of ids) { const i = await agent(`/ca/instrumentations/${id}`); if (!i.predicate.eq || i.predicate.eq[1] !== vmName) throw new Error(`#${id} ${JSON.stringify(i.predicate)}`); }
  });
  await step('clicking a ready-made view again (or pressing its key) makes no duplicate instrumentation', async () => {
    await page.click('#view-procs-btn');
    await page.evaluate(() => document.activeElement && document.activeElement.blur());
    await page.keyboard.press('1');
    await page.waitForTimeout(800);
    const d = await duplicates();
    if (d.dups.length) throw new Error(`duplicates ${d.dups}`);
    const keys = await page.$$eval('#panels section.panel[data-key]', (s) => s.map((x) => x.dataset.key).filter((k) => /^(procs|when)-/.test(k)));
    if (keys.length !== 3) throw new Error(`view panels ${keys}`);
    return `${d.n} of the UI's own, none twice; ${await instrCount()} in all (${beforeViews} before)`;
    return `${n}`;
  });
  await step('percent of total draws every second as shares summing to 100%', async () => {
    // the operator's own: exits by vCPU of this VM through the form
    await page.selectOption('#f-metric', 'vm.exits');
    await page.check('#f-decomp input[value="vcpu"]');
    await page.click('#f-addcond');
    await page.selectOption('#f-pred .prow:last-child .p-field', 'vm');
    await page.fill('#f-pred .prow:last-child .p-value', vmName);
    await page.click('#f-create');
    await page.waitForSelector('#create-form .fmsg.ok', { timeout: 5000 });
    const id = (await page.textContent('#create-form .fmsg')).replace(/^created #/, '');
    const p = `#panels section.panel[data-id="${id}"]`;
    await page.waitForSelector(`${p}[data-ready="1"]`, { timeout: 15000 });
    await page.check(`${p} input[data-prop="pct"]`);
    const t = await page.$eval(`${p} canvas.plot`, (c) => c.dataset.yTicks);
    if (!/100%/.test(t)) throw new Error(t);
    const sum = await page.evaluate((i) => { const c = window.kvmscope.charts.get(`i${i}`); const g = c.grid; let last = -1; for (let k = g.n - 1; k >= 0; k--) if (g.total[k]) { last = k; break; } return g.keys.reduce((a, k) => a + (100 * g.series.get(k)[last]) / g.total[last], 0); }, id);
    if (Math.abs(sum - 100) > 0.01) throw new Error(`shares sum to ${sum}`);
    return `${t}; newest second sums to ${sum.toFixed(1)}%`;
  });
  await step('✕ asks before deleting a shared instrumentation; "keep it" keeps it', async () => {
    const p = '#panels section.panel.stacked:has(input[data-prop="pct"]:checked)';
    const id = await page.getAttribute(p, 'data-id');
    await page.click(`${p} button.danger`);
    await page.waitForSelector('#confirm[open]', { timeout: 2000 });
    await page.click('#confirm button[value="no"]');
    await page.waitForTimeout(300);
    if (!(await agent(`/ca/instrumentations/${id}`)).id) throw new Error('deleted without asking');
    await page.click(`${p} button.danger`);
    await page.click('#confirm button[value="yes"]');
    await page.waitForFunction((i) => !document.querySelector(`#panels section.panel[data-id="${i}"]`), id, { timeout: 3000 });
    const after = await page.evaluate(async (i) => (await fetch(`/ca/instrumentations/${i}`)).status, id);
    for (let i = consoleErrors.length - 1; i >= 0; i--) if (/404/.test(consoleErrors[i])) consoleErrors.splice(i, 1);
    if (after !== 404) throw new Error(`status ${after} after delete`);
    return `#${id}`;
  });

  // ---- named dashboards on the agent
  await step('a dashboard saved on the agent brings the view back', async () => {
    await page.goto(`${base}/#/vm/${vmName}?w=60&show=exits,latency`);
    await page.waitForFunction(() => document.querySelectorAll('#view-vm section.panel').length === 2, null, { timeout: 15000 });
    await page.focus('body');
    await page.keyboard.press('d');
    await page.waitForSelector('#dash-dialog[open]', { timeout: 2000 });
    await page.fill('#dash-name', 'ui-test');
    await page.click('#dash-save');
    await page.waitForSelector('#dash-list button.dash-load[data-name="ui-test"]', { timeout: 5000 });
    const stored = await agent('/ca/dashboards/ui-test');
    if (!/show=exits%2Clatency|show=exits,latency/.test(stored.hash)) throw new Error(JSON.stringify(stored));
    await page.keyboard.press('Escape');
    await page.goto(`${base}/#/host`);
    await page.waitForSelector('#vm-table', { timeout: 5000 });
    await page.click('#dash-btn');
    await page.click('#dash-list button.dash-load[data-name="ui-test"]');
    await page.waitForFunction(() => document.querySelectorAll('#view-vm section.panel').length === 2 && window.kvmscope.tm.window === 60, null, { timeout: 15000 });
    return stored.hash;
  });
  await step('the token dialog does not claim a token file on an agent without one', async () => {
    await page.click('#token-btn');
    const t = await page.textContent('#token-why');
    await page.click('#token-form button[value="cancel"]');
    if (/runs with a token file/.test(t)) throw new Error(t);
    return t;
  });

  // ---- header at 800 px, and an axe check
  await step('the header stays on one line at 800 px', async () => {
    await page.setViewportSize({ width: 800, height: 700 });
    await page.waitForTimeout(300);
    const hgt = await page.$eval('#top', (e) => e.getBoundingClientRect().height);
    const over = await page.$eval('#top', (e) => e.scrollWidth > e.clientWidth + 1);
    await page.setViewportSize({ width: 1400, height: 900 });
    if (hgt > 40 || over) throw new Error(`height ${hgt}px, overflowing ${over}`);
    return `${hgt}px`;
  });
  for (const [where, hash] of [['host overview', '#/host'], ['VM page', `#/vm/${vmName}`], ['analytics', '#/analytics']]) {
    await step(`axe-core finds no accessibility violation on the ${where} (contrast, labels, names)`, async () => {
      await page.goto(`${base}/${hash}`);
      await page.waitForTimeout(3000);
      await page.addScriptTag({ content: readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8') });
      const res = await page.evaluate(async () => window.axe.run(document, { resultTypes: ['violations'], runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21aa', 'best-practice'] } }));
      const v = res.violations.filter((x) => x.impact === 'serious' || x.impact === 'critical' || x.impact === 'moderate');
      if (v.length) throw new Error(v.map((x) => `${x.id} (${x.nodes.length}: ${x.nodes[0].target.join(' ')})`).join('; '));
      return `${res.passes ? res.passes.length : 'all'} rules pass`;
    });
  }
  await step('Tab order runs through the header in reading order', async () => {
    await page.goto(`${base}/#/host`);
    await page.reload();
    await page.waitForSelector('#vm-table', { timeout: 10000 });
    const order = [];
    await page.evaluate(() => document.activeElement && document.activeElement.blur());
    for (let i = 0; i < 9; i++) {
      await page.keyboard.press('Tab');
      order.push(await page.evaluate(() => { const e = document.activeElement; return e.id || e.getAttribute('aria-label') || e.textContent.trim().split(/\s/)[0]; }));
    }
    const want = ['skip', 'Host', 'Analytics', 'window', 'pause', 'dash-btn', 'token-btn', 'help-btn', 'range-from'];
    if (order.join() !== want.join()) throw new Error(`${order.join(' > ')}, want ${want.join(' > ')}`);
    return order.join(' > ');
  });

  // The README's screenshots, last: the guest has a minute of history now.
  if (docsImg) {
    await step('screenshots of the overview, a VM page and a zoomed latency heatmap for docs/img', async () => {
      await page.goto(`${base}/#/host?w=60`);
      await page.reload();
      await page.waitForFunction((n) => Number(document.querySelector(`#vm-table tr[data-vm="${n}"] canvas[data-spark="exits"]`)?.dataset.max) > 0, vmName, { timeout: 15000 });
      await page.waitForTimeout(1500);
      await page.screenshot({ path: `${docsImg}/web-overview.png` });
      await page.goto(`${base}/#/vm/${vmName}?w=60`);
      await page.waitForSelector(`${lat}[data-ready="1"]`, { timeout: 15000 });
      await page.waitForTimeout(2500);
      await page.screenshot({ path: `${docsImg}/web-vm.png` });
      const box = await page.locator(`${lat} canvas.plot`).boundingBox();
      const d = await page.$eval(`${lat} canvas.plot`, (c) => ({ x: +c.dataset.plotX, w: +c.dataset.plotW }));
      await page.mouse.move(box.x + d.x + d.w * 0.6, box.y + 80);
      await page.mouse.down();
      await page.mouse.move(box.x + d.x + d.w * 0.99, box.y + 90, { steps: 8 });
      await page.mouse.up();
      await page.waitForFunction((s) => Number(document.querySelector(`${s} canvas.plot`).dataset.n) <= 30, lat, { timeout: 5000 });
      await page.check(`${lat} input[data-prop="p95"]`);
      await page.waitForTimeout(800);
      await page.screenshot({ path: `${docsImg}/web-latency-zoom.png`, clip: await page.locator(lat).boundingBox() });
    });
  }

  await step('no console errors', async () => {
    if (consoleErrors.length) throw new Error(consoleErrors.slice(0, 3).join(' | '));
  });
  await step('no request left the agent\'s origin', async () => {
    if (outside.length) throw new Error(outside.slice(0, 3).join(' '));
  });
} catch (e) {
  say(false, `browser session: ${e.message}`);
} finally {
  await ctx.close();
}
