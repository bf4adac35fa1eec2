// bench/web.sh's browser half: the Analytics page with the agent's
// instrumentations (10 live charts, every one on screen), refreshed once a
// second; prints the duration of each refresh of all charts, first as the
// UI does it (only the new final seconds), then re-downloading the whole
// window each time (what it did before), in one run.
// Usage: node bench_refresh.mjs BASE_URL SECONDS USER_DATA_DIR
import { openLocalOnly } from './browser.mjs';

const [base, seconds, userData] = process.argv.slice(2);
// requests are not routed through the driver here: its round trips are not
// the UI's cost
const { ctx, page } = await openLocalOnly(userData, new URL(base).origin, { width: 1400, height: 4200 }, false);
page.on('pageerror', (e) => console.error(`page error: ${e.message}`));
await page.goto(`${base}/#/analytics?w=300`);
await page.waitForFunction(() => document.querySelectorAll('#panels section.panel[data-ready]').length >= 10, null, { timeout: 30000 });
const run = async (mode) => {
  await page.evaluate((m) => { window.kvmscope.benchFullWindow = m === 'full'; window.kvmscope.refreshMs.length = 0; }, mode);
  await page.waitForTimeout(3000);   // warm: every chart holds its window
  await page.evaluate(() => { window.kvmscope.refreshMs.length = 0; });
  await page.waitForTimeout(Number(seconds) * 1000);
  const r = await page.evaluate(() => window.kvmscope.refreshMs.slice());
  for (const x of r) console.log(`${mode} ${x.charts} ${x.ms.toFixed(2)}`);
};
await run('incremental');
await run('full');
await ctx.close();
