// Drives kvmscope's web UI in headless Chromium against a running agent.
// Prints one line per check, "ok DESC", "not_ok DESC" or "skip DESC", for
// tests/integration/web_ui.sh to turn into TAP.
// Usage: node ui_test.mjs BASE_URL VM_NAME ARTIFACT_DIR USER_DATA_DIR
import { openLocalOnly, say } from './browser.mjs';

const [base, vmName, artifacts, userData] = process.argv.slice(2);
const origin = new URL(base).origin;
const fail = (desc) => say(false, desc);

const consoleErrors = [];
const { ctx, page, outside } = await openLocalOnly(userData, origin, { width: 1400, height: 1000 });
page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
page.on('pageerror', (e) => consoleErrors.push(`uncaught: ${e.message}`));

async function step(desc, fn) {
  try {
    const r = await fn();
    say(r !== false, desc + (typeof r === 'string' ? ` (${r})` : ''));
    return r;
  } catch (e) {
    fail(`${desc}: ${String(e.message || e).split('\n')[0]}`);
    return null;
  }
}

try {
  await step('the UI loads and reports the agent as reachable', async () => {
    await page.goto(`${base}/#host`);
    await page.waitForSelector('#conn.ok', { timeout: 10000 });
    return page.textContent('#conn');
  });

  // The truth about the guest's vCPUs comes from the agent's VM list.
  const vm = await page.evaluate(async (name) => {
    const r = await fetch('/ca/vms');
    return (await r.json()).find((v) => v.name === name) || null;
  }, vmName);
  await step(`the agent lists VM ${vmName}`, async () => !!vm);

  await step('the kvmstat table lists every vCPU of the guest', async () => {
    const want = (vm ? vm.vcpus : []).map((c) => String(c.index)).sort();
    if (!want.length) throw new Error('the guest has no vCPUs to look for');
    await page.waitForFunction(([name, n]) =>
      document.querySelectorAll(`#kvmstat-table tbody tr[data-vm="${name}"]`).length >= n, [vmName, want.length], { timeout: 10000 });
    const got = await page.$$eval(`#kvmstat-table tbody tr[data-vm="${vmName}"]`, (rows) => rows.map((r) => r.dataset.vcpu).sort());
    const tids = await page.$$eval(`#kvmstat-table tbody tr[data-vm="${vmName}"] td:nth-child(3)`, (t) => t.map((x) => x.textContent));
    const wantTids = vm.vcpus.map((c) => String(c.tid)).sort();
    if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`rows for vCPUs ${got}, want ${want}`);
    if (JSON.stringify([...tids].sort()) !== JSON.stringify(wantTids)) throw new Error(`tids ${tids}, want ${wantTids}`);
    return `vCPUs ${got.join(',')}`;
  });

  await step('the VM table shows the guest\'s VMID and UUID as the agent lists them', async () => {
    const sel = `#vm-table tbody tr[data-vm="${vmName}"] td`;
    await page.waitForSelector(sel, { timeout: 10000 });
    const cells = await page.$$eval(sel, (t) => t.map((x) => x.textContent));
    if (!vm || !vm.vmid || !vm.uuid) throw new Error(`the agent gives no vmid/uuid: ${JSON.stringify(vm)}`);
    if (cells[1] !== vm.vmid || cells[2] !== vm.uuid) throw new Error(`cells ${cells.slice(0, 3)}, want ${vm.vmid} ${vm.uuid}`);
    return `${cells[1]} ${cells[2]}`;
  });

  await step('the kvmstat table counts the guest\'s interrupts (1/s)', async () => {
    const sel = `#kvmstat-table tbody tr[data-vm="${vmName}"][data-vcpu="0"]`;
    try {
      await page.waitForFunction((s) => {
        const r = document.querySelector(s);
        return r && Number(r.lastElementChild.textContent) >= 1;
      }, sel, { timeout: 20000 });
    } catch (e) {
      const row = await page.$eval(sel, (r) => r.innerText).catch(() => 'no row');
      throw new Error(`no interrupt counted in 20 s: row "${row.replace(/\s+/g, ' ')}", note "${await page.textContent('#kvmstat-table').catch(() => '')}"`);
    }
    return `irqs/s ${await page.textContent(`#kvmstat-table tbody tr[data-vm="${vmName}"][data-vcpu="0"] td:last-child`)}`;
  });
  await page.screenshot({ path: `${artifacts}/web-host.png` });

  // Create vm.irqs by vm and subsecond, only for this guest, through the form.
  await page.keyboard.press('n');
  await page.selectOption('#f-metric', 'vm.irqs');
  await page.check('#f-decomp input[value="vm"]');
  await page.check('#f-decomp input[value="subsecond"]');
  await page.click('#f-addcond');
  await page.selectOption('#f-pred .prow:last-child .p-field', 'vm');
  await page.selectOption('#f-pred .prow:last-child .p-op', 'eq');
  await page.fill('#f-pred .prow:last-child .p-value', vmName);
  await page.click('#f-create');
  const id = await step('the form creates the instrumentation', async () => {
    await page.waitForSelector('#create-form .fmsg.ok', { timeout: 5000 });
    return (await page.textContent('#create-form .fmsg')).replace(/^created #/, '');
  });
  const spec = await page.evaluate(async (i) => (await fetch(`/ca/instrumentations/${i}`)).json(), id);
  await step('the agent holds what the form said', async () => {
    const ok = spec.module === 'vm' && spec.stat === 'irqs' && spec.decomposition.join() === 'vm,subsecond' &&
      JSON.stringify(spec.predicate) === JSON.stringify({ eq: ['vm', vmName] });
    if (!ok) throw new Error(JSON.stringify(spec));
    return JSON.stringify(spec.predicate);
  });

  const panel = `#instr-${id}`;
  await page.selectOption(`${panel} header select[aria-label="time window"]`, '60');
  await step('the heatmap gets data', async () => {
    await page.waitForSelector(`${panel}[data-ready="1"]`, { timeout: 15000 });
  });
  // A few seconds more so the line has several points.
  await page.waitForTimeout(4000);

  // Rows of the drawn plot that hold colour: the background of the agent's
  // PNG is white; anything else is a counted cell.
  const ink = await page.evaluate((sel) => {
    const c = document.querySelector(`${sel} canvas.plot`);
    const d = c.dataset;
    const r = window.devicePixelRatio || 1;
    const x0 = Math.round(d.plotX * r), y0 = Math.round(d.plotY * r);
    const w = Math.round(d.plotW * r), hh = Math.round(d.plotH * r);
    const px = c.getContext('2d').getImageData(x0, y0, w, hh).data;
    const rows = [];
    const cols = new Set();
    let sample = null;
    for (let y = 0; y < hh; y++) {
      let n = 0;
      for (let x = 0; x < w; x++) {
        const i = (y * w + x) * 4;
        if (px[i] < 235 || px[i + 1] < 235 || px[i + 2] < 235) {
          n++; cols.add(x);
          if (!sample) sample = [x, y, px[i], px[i + 1], px[i + 2]];
        }
      }
      if (n) rows.push([y, n]);
    }
    return { rows, ncols: cols.size, ymin: +d.ymin, ymax: +d.ymax, h: hh, r, sample, lastCol: Math.max(...cols) };
  }, panel);
  const msOf = (y) => ink.ymax - ((y + 0.5) / ink.h) * (ink.ymax - ink.ymin);
  await step('the heatmap shows one line at +250 ms', async () => {
    if (!ink.rows.length) throw new Error('no coloured pixel in the plot');
    const lo = msOf(ink.rows[ink.rows.length - 1][0]), hi = msOf(ink.rows[0][0]);
    if (lo < 245 || hi > 265) throw new Error(`colour between ${lo.toFixed(1)} and ${hi.toFixed(1)} ms, want only 250..260 ms`);
    if (ink.ncols < 3) throw new Error(`only ${ink.ncols} columns coloured, want one per second`);
    return `${ink.rows.length} px rows at ${lo.toFixed(1)}..${hi.toFixed(1)} ms, ${ink.ncols} columns`;
  });
  await page.screenshot({ path: `${artifacts}/web-heatmap.png` });

  // Click the newest coloured cell, mid-line.
  const mid = ink.rows[Math.floor(ink.rows.length / 2)];
  await step('clicking a cell of the line shows its details', async () => {
    if (!mid) throw new Error('nothing to click');
    const box = await page.locator(`${panel} canvas.plot`).boundingBox();
    const d = await page.$eval(`${panel} canvas.plot`, (c) => ({ x: +c.dataset.plotX, y: +c.dataset.plotY }));
    await page.mouse.click(box.x + d.x + (ink.lastCol - 1) / ink.r, box.y + d.y + mid[0] / ink.r);
    await page.waitForSelector(`${panel} .details.open .dbody`, { timeout: 5000 });
    const det = await page.$eval(`${panel} .details .dbody`, (b) => ({ ...b.dataset, keys: [...b.querySelectorAll('.dkeys tr')].map((r) => [...r.cells].map((c) => c.textContent)) }));
    if (!(Number(det.bucketMin) <= 250 && Number(det.bucketMax) >= 259)) throw new Error(`bucket ${det.bucketMin}..${det.bucketMax}, want 250..260`);
    if (!(Number(det.total) >= 1)) throw new Error(`total ${det.total}`);
    const k = det.keys.find((r) => r[0] === vmName);
    if (!k || Number(k[1]) !== Number(det.total)) throw new Error(`keys ${JSON.stringify(det.keys)}, want ${vmName}: ${det.total}`);
    return `bucket ${det.bucketMin}..${det.bucketMax} ms, ${vmName}: ${k[1]}`;
  });
  await page.screenshot({ path: `${artifacts}/web-details.png` });

  await step(`selecting key ${vmName} draws it in its own hue (112)`, async () => {
    await page.click(`${panel} .legend button[data-key="${vmName}"]`);
    await page.waitForFunction((sel) => {
      const c = document.querySelector(`${sel} canvas.plot`);
      const d = c.dataset;
      const r = window.devicePixelRatio || 1;
      const px = c.getContext('2d').getImageData(Math.round(d.plotX * r), Math.round(d.plotY * r), Math.round(d.plotW * r), Math.round(d.plotH * r)).data;
      for (let i = 0; i < px.length; i += 4) {
        const [R, G, B] = [px[i], px[i + 1], px[i + 2]];
        if (R < 235 || G < 235 || B < 235) {
          // hue 112 is green-dominant; hue 21 (unselected) is red-dominant
          if (G > R && G > B) return true;
        }
      }
      return false;
    }, panel, { timeout: 5000 });
  });

  await step('pause stops the chart and resume restarts it', async () => {
    await page.click(`${panel} .pctrl button:has-text("pause")`);
    const before = await page.$eval(`${panel} canvas.plot`, (c) => c.dataset.start);
    await page.waitForTimeout(2500);
    const during = await page.$eval(`${panel} canvas.plot`, (c) => c.dataset.start);
    await page.click(`${panel} .pctrl button:has-text("resume")`);
    await page.waitForFunction(([sel, s]) => document.querySelector(`${sel} canvas.plot`).dataset.start !== s, [panel, during], { timeout: 5000 });
    if (before !== during) throw new Error(`the chart moved while paused (${before} -> ${during})`);
  });

  await step('the p95 overlay is drawn on the line', async () => {
    await page.check(`${panel} .pctrl label:has-text("p95") input`);
    await page.waitForFunction((sel) => !!document.querySelector(`${sel} .legend`).textContent.match(/95th/), panel, { timeout: 5000 });
    const pts = await page.evaluate(async ([i, s]) => (await fetch(`/ca/instrumentations/${i}/value/heatmap/percentile?percentile=0.95&duration=60&series=true`)).json(), [id, vmName]);
    const vals = pts.map((p) => p[1]).filter((v) => v !== null);
    if (!vals.length || vals.some((v) => v < 250 || v > 260)) throw new Error(`p95 ${JSON.stringify(vals)}`);
    return `p95 in ${Math.min(...vals)}..${Math.max(...vals)} ms`;
  });
  await page.screenshot({ path: `${artifacts}/web-overlay.png` });

  await step('no console errors', async () => {
    if (consoleErrors.length) throw new Error(consoleErrors.slice(0, 3).join(' | '));
  });
  await step('no request left the agent\'s origin', async () => {
    if (outside.length) throw new Error(outside.slice(0, 3).join(' '));
  });
} catch (e) {
  fail(`browser session: ${e.message}`);
} finally {
  await ctx.close();
}
