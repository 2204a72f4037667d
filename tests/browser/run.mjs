// Drives Debian's Chromium through the test site (tests/browser.rs starts the servers and
// checks what Footfall stored). Prints a JSON report: the JavaScript errors pages saw and
// values read from pages. Usage: node run.mjs SITE_ORIGIN
import { chromium } from "playwright-core";

const site = process.argv[2];
const UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const errors = [];
const report = { errors, values: {} };

async function newPage(context) {
  const page = await context.newPage();
  let inFlight = 0;
  page.on("request", (r) => { if (r.url().includes("/api/event")) inFlight++; });
  const done = (r) => { if (r.url().includes("/api/event")) inFlight--; };
  page.on("requestfinished", done);
  page.on("requestfailed", done);
  page.on("pageerror", (e) => errors.push(`${page.url()}: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) errors.push(`${page.url()}: console: ${m.text()}`);
  });
  // Waits until the page's event requests have all been answered.
  page.settle = async () => {
    await page.waitForTimeout(150);
    for (let i = 0; i < 100 && inFlight > 0; i++) await page.waitForTimeout(50);
  };
  return page;
}

const context = await browser.newContext({ userAgent: UA });
let page = await newPage(context);

// Pageview, a call queued before the script loaded, a custom event with props, revenue
// and a callback, SPA navigations (pushState, popstate, a replaceState on the same path).
await page.goto(`${site}/`);
await page.settle();
await page.click("#custom");
await page.settle();
report.values.purchaseStatus = await page.evaluate(() => window.purchaseStatus);
await page.click("#spa-a");
await page.settle();
await page.click("#spa-b");
await page.settle();
await page.click("#same");
await page.settle();
await page.goBack(); // popstate to /spa/a (the /spa/b entry was replaced)
await page.settle();
await page.goBack(); // popstate to /
await page.settle();

// Hash-based routing.
await page.goto(`${site}/hash.html`);
await page.settle();
await page.click("#to-x");
await page.settle();
await page.click("#to-y");
await page.settle();

// Outbound links, file downloads, tagged elements (and a click inside a tagged link).
await page.goto(`${site}/links.html`);
await page.settle();
for (const id of ["#outbound", "#download", "#internal", "#tagged", "#tagged-inner"]) {
  await page.click(id);
  await page.settle();
}
await page.click("#outbound", { button: "middle" });
await page.settle();

// Engagement: scroll to the end, stay a moment, close the tab (in this headless setup a
// request sent while navigating away is not delivered; one sent while closing is).
const reader = await newPage(context);
await reader.goto(`${site}/long.html`);
await reader.settle();
await reader.evaluate(() => window.scrollTo(0, document.body.scrollHeight));
await reader.waitForTimeout(1500);
await reader.close({ runBeforeUnload: true });

// Exclusions, localhost, 404, manual pageviews.
for (const path of ["/admin/settings", "/localhost.html", "/missing-page"]) {
  await page.goto(`${site}${path}`);
  await page.settle();
}
await page.goto(`${site}/manual.html`);
await page.settle();
await page.click("#send");
await page.settle();

// An unreachable events API: no error in the page; the callback hears of the failure.
await page.goto(`${site}/offline.html`);
report.values.offlineCallback = await page.evaluate(() => new Promise((resolve) => window.footfall("Lost", { callback: (r) => resolve(r && r.error ? "error" : JSON.stringify(r)) })));

// A Plausible script tag pointed at Footfall, with Plausible's queue snippet.
await page.goto(`${site}/plausible-tag.html`);
await page.settle();
await page.click("#later");
await page.settle();

// Plausible's own npm tracker, sending to Footfall.
await page.goto(`${site}/plausible-npm.html`);
await page.settle();
await page.click("#npm-event");
await page.settle();
await page.click("#npm-out");
await page.settle();
await page.click("#npm-spa");
await page.settle();
await page.evaluate(() => window.scrollTo(0, document.body.scrollHeight));
await page.waitForTimeout(300);
await page.close({ runBeforeUnload: true });

// The opt-out flag, in a context of its own.
const optedOut = await browser.newContext({ userAgent: UA });
// The flag is in place before the page's scripts run, as after an earlier visit.
await optedOut.addInitScript(() => localStorage.setItem("footfall_ignore", "true"));
page = await newPage(optedOut);
await page.goto(`${site}/optout.html`);
await page.settle();
report.values.optedOutCalls = await page.evaluate(() => new Promise((resolve) => window.footfall("Opted Out Event", { callback: (r) => resolve(r === undefined ? "skipped" : "sent") })));
await page.settle();

await browser.close();
console.log(JSON.stringify(report));
