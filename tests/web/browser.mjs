// What the browser checks share: headless Debian Chromium with a fresh
// profile, every request outside the agent's origin recorded and refused
// (so a CDN font or an analytics beacon fails the test), and the
// "ok DESC" / "not_ok DESC" lines tests/integration/web_ui.sh turns into TAP.
import { chromium } from 'playwright-core';

export const say = (good, desc) => console.log(`${good ? 'ok' : 'not_ok'} ${desc}`);

// Returns { ctx, page, outside }: outside collects the refused URLs.
// watch: false leaves requests alone (bench/web.sh: routing every request
// through the test driver would add its own milliseconds to each).
export async function openLocalOnly(userData, origin, viewport, watch = true) {
  const outside = [];
  const ctx = await chromium.launchPersistentContext(userData, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport,
  });
  if (watch) await ctx.route('**/*', (route) => {
    const u = route.request().url();
    if (u.startsWith(`${origin}/`) || u.startsWith('data:')) return route.continue();
    outside.push(u);
    return route.abort();
  });
  const page = ctx.pages()[0] || await ctx.newPage();
  return { ctx, page, outside };
}
