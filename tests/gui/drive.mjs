// Drives Debian's chromium (playwright-core, never a downloaded browser)
// through the epygibus GUI for tests/it/gui/browser.rs, which prepared the
// archives and checks what this script reports: one JSON object on the
// last line of stdout. Any failed expectation throws (exit status 1).
//
// Environment: GUI_URL (the printed URL, with its token), ARCHIVE, SNAP_DIR
// (a directory of the backed-up tree, absolute), FILE (a file in it),
// RESTORE_DIR (a directory inside SNAP_DIR to restore), OUT_DIR (extract
// target), BIG_ARCHIVE and BIG_DIR (a 10,000-entry directory in it), DOWNLOADS, SHOTS (folder
// for screenshots).
import { chromium } from "playwright-core";
import path from "node:path";
import fs from "node:fs";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const GUI_URL = env("GUI_URL");
const ARCHIVE = env("ARCHIVE");
const FILE = env("FILE");
const RESTORE_DIR = env("RESTORE_DIR");
const OUT_DIR = env("OUT_DIR");
const BIG_DIR = env("BIG_DIR");
const BIG_ARCHIVE = env("BIG_ARCHIVE");
const DOWNLOADS = env("DOWNLOADS");
const SHOTS = env("SHOTS");
const base = new URL(GUI_URL).origin;
const report = {};

function expect(cond, what) {
  if (!cond) throw new Error("expectation failed: " + what);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  // playwright gives every launch a fresh, empty profile of its own.
});

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, name + ".png"), fullPage: false });
}

// Every input, select and textarea has a label a screen reader reads.
async function unlabelled(page) {
  return page.evaluate(() => [...document.querySelectorAll("input, select, textarea")]
    .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute("aria-label"))
    .map((el) => el.outerHTML));
}

try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true });
  const page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("dialog", (d) => { errors.push("a dialog opened: " + d.message()); d.dismiss(); });

  // Dashboard: the printed URL signs in and lists the archives.
  await page.goto(GUI_URL);
  expect(new URL(page.url()).search === "", "the token leaves the address bar");
  await page.getByRole("link", { name: ARCHIVE, exact: true }).waitFor();
  report.dashboard_archives = await page.locator("section").first().locator("table tbody tr").count();
  // What the first page load transferred (document, script, style, API).
  await page.waitForLoadState("networkidle");
  report.first_load_bytes = await page.evaluate(() => {
    const nav = performance.getEntriesByType("navigation")[0];
    return performance.getEntriesByType("resource").reduce((n, r) => n + r.transferSize, nav.transferSize);
  });
  expect((await unlabelled(page)).length === 0, "dashboard inputs are labelled");
  await shot(page, "dashboard-1280");

  // Keyboard: Tab reaches the skip link first, and Enter on a focused
  // archive link opens it.
  await page.keyboard.press("Tab");
  report.first_tab = await page.evaluate(() => document.activeElement.textContent);
  await page.getByRole("link", { name: ARCHIVE, exact: true }).focus();
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: ARCHIVE, exact: true }).waitFor();
  const before = await page.locator("table.snapshots tbody tr").count();

  // Back up now: progress shows, then the new snapshot is listed.
  const seen = [];
  await page.exposeFunction("epyProgress", (t) => seen.push(t));
  await page.evaluate(() => {
    new MutationObserver(() => {
      const t = document.querySelector(".progress-text");
      if (t && t.textContent) window.epyProgress(t.textContent);
    }).observe(document.body, { subtree: true, childList: true, characterData: true });
  });
  await page.getByRole("button", { name: "Back up now" }).click();
  await page.locator(".progress-text").first().waitFor();
  await shot(page, "archive-backup-progress-1280");
  await page.getByText(/^Snapshot .* written/).waitFor({ timeout: 120000 });
  await page.waitForFunction((n) => document.querySelectorAll("table.snapshots tbody tr").length === n + 1, before);
  report.progress_seen = seen;
  report.snapshots_before = before;
  report.snapshots_after = await page.locator("table.snapshots tbody tr").count();
  await shot(page, "archive-1280");

  // What changed between the two snapshots.
  await page.getByRole("button", { name: "Compare" }).click();
  await page.getByText(/change\(s\) from/).waitFor();
  report.diff = await page.getByText(/change\(s\) from/).textContent();

  // Retention: the preview lists what forget would remove (not applied).
  await page.getByRole("button", { name: /Preview what forget/ }).click();
  await page.getByRole("button", { name: /^Remove \d+ snapshot/ }).waitFor();
  report.forget_button = await page.getByRole("button", { name: /^Remove \d+ snapshot/ }).textContent();
  await shot(page, "archive-retention-1280");

  // Browse to the file through the directory links, and download it.
  await page.getByRole("link", { name: "Browse the newest snapshot" }).click();
  await page.locator("table.files").waitFor();
  // It opens where the backed-up tree starts (the single-directory chain
  // from `/` is walked down); go on from there.
  await page.waitForURL((u) => u.searchParams.get("path") !== null);
  const here = new URL(page.url()).searchParams.get("path");
  report.opened_at = here;
  const parts = path.relative(here, path.dirname(FILE)).split("/").filter(Boolean);
  for (const p of parts) {
    await page.locator("table.files a.dir", { hasText: new RegExp("^" + p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&") + "/$") }).click();
    await page.waitForURL((u) => u.searchParams.get("path").endsWith("/" + p));
    await page.locator("table.files").waitFor();
  }
  await page.getByRole("button", { name: path.basename(FILE), exact: true }).click();
  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.locator(".details").getByRole("link", { name: "Download" }).click(),
  ]);
  report.downloaded = path.join(DOWNLOADS, "file.bin");
  await download.saveAs(report.downloaded);
  // Text preview of the same file stays text.
  await page.getByRole("button", { name: "Preview" }).click();
  await page.locator(".preview pre, .preview p").first().waitFor();
  await shot(page, "browser-1280");
  expect((await unlabelled(page)).length === 0, "browser inputs are labelled: " + (await unlabelled(page)).join(" "));

  // A hostile name shows as text: no element made from it.
  report.hostile_elements = await page.evaluate(() => document.querySelectorAll("table.files b, table.files img").length);

  // Restore a directory into OUT_DIR.
  await page.goto(base + "/browse?" + new URLSearchParams({ src: "A:" + ARCHIVE, path: path.dirname(RESTORE_DIR) }));
  await page.locator("table.files").waitFor();
  await page.getByRole("checkbox", { name: "Select " + path.basename(RESTORE_DIR), exact: true }).check();
  await page.getByLabel("Directory (absolute path)").fill(OUT_DIR);
  await page.getByRole("button", { name: "Restore", exact: true }).click();
  await page.getByText(/^Written: /).waitFor({ timeout: 120000 });
  report.restore_summary = await page.getByText(/^Written: /).textContent();
  await page.locator("section.restore").scrollIntoViewIfNeeded();
  await shot(page, "restore-1280");

  // A 10,000-entry directory: first page, then the last page.
  const t0 = Date.now();
  await page.goto(base + "/browse?" + new URLSearchParams({ src: "A:" + BIG_ARCHIVE, path: BIG_DIR }));
  await page.locator("table.files tbody tr").first().waitFor();
  report.big_first_page_ms = Date.now() - t0;
  await page.waitForLoadState("networkidle");
  report.big_first_load_bytes = await page.evaluate(() => {
    const nav = performance.getEntriesByType("navigation")[0];
    return performance.getEntriesByType("resource").reduce((n, r) => n + r.transferSize, nav.transferSize);
  });
  report.big_rows = await page.locator("table.files tbody tr").count();
  report.big_pager = await page.locator(".pager span").textContent();
  const apiTimes = [];
  for (let i = 0; i < 5; i++) {
    const r = await page.evaluate(async (p) => {
      const started = performance.now();
      const snaps = await (await fetch("/api/snapshots?src=" + encodeURIComponent(p.src))).json();
      const q = new URLSearchParams({ src: p.src, snap: snaps.snapshots[0].name, path: p.dir, offset: String(9800), limit: "200" });
      const t = performance.now();
      const j = await (await fetch("/api/list?" + q)).json();
      return { server_ms: j.server_ms, wall_ms: performance.now() - t, total: j.total, n: j.entries.length, all_ms: performance.now() - started };
    }, { src: "A:" + BIG_ARCHIVE, dir: BIG_DIR });
    apiTimes.push(r);
  }
  report.big_api = apiTimes;
  await page.getByLabel("Filter").fill("f09999");
  await page.waitForFunction(() => document.querySelectorAll("table.files tbody tr").length === 1);

  // Housekeeping: check with read-data.
  await page.goto(base + "/housekeeping");
  await page.getByLabel("read and hash all content").first().check();
  await page.getByRole("button", { name: "Check" }).first().click();
  await page.getByText(/No problems: /).waitFor({ timeout: 120000 });
  report.check = await page.getByText(/No problems: /).textContent();
  await shot(page, "housekeeping-1280");

  // Search.
  await page.goto(base + "/search");
  await page.getByLabel("Name or glob").fill(path.basename(FILE));
  await page.getByRole("button", { name: "Search" }).click();
  await page.locator("details summary").first().waitFor();
  await shot(page, "search-1280");

  // Rescue: the snapshot directory alone.
  await page.goto(base + "/rescue");
  await page.getByLabel("Snapshot directory").fill(env("SNAPSHOT_DIR"));
  await page.getByRole("button", { name: "Open" }).click();
  await page.locator("table.files").waitFor();
  report.rescue_url = page.url();
  await shot(page, "rescue-browser-1280");
  report.page_errors = errors;

  // A phone: 390 px wide, nothing wider than the screen.
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 1 });
  const p2 = await phone.newPage();
  await p2.goto(GUI_URL);
  await p2.getByRole("link", { name: ARCHIVE, exact: true }).waitFor();
  const overflow = async () => p2.evaluate(() => document.documentElement.scrollWidth);
  report.phone_widths = { dashboard: await overflow() };
  await shot(p2, "dashboard-390");
  await p2.getByRole("link", { name: ARCHIVE, exact: true }).click();
  await p2.locator("table.snapshots").waitFor();
  report.phone_widths.archive = await overflow();
  await shot(p2, "archive-390");
  await p2.goto(base + "/browse?" + new URLSearchParams({ src: "A:" + ARCHIVE, path: path.dirname(FILE) }));
  await p2.locator("table.files").waitFor();
  report.phone_widths.browser = await overflow();
  await shot(p2, "browser-390");
  await p2.goto(base + "/housekeeping");
  await p2.getByRole("button", { name: "Check" }).first().waitFor();
  report.phone_widths.housekeeping = await overflow();
  await shot(p2, "housekeeping-390");
} finally {
  await browser.close();
}
console.log(JSON.stringify(report));
