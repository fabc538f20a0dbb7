// epygibus GUI: draws each screen from the JSON API (docs/gui-api.md).
// Plain JavaScript, no build step. Data from snapshots is only ever put
// into the page as text (textContent), never as HTML.
"use strict";

const CSRF = document.querySelector('meta[name="csrf"]').content;
const app = document.getElementById("app");
const PAGE = 200;

// ---- helpers -------------------------------------------------------------

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

async function api(path, body) {
  const opts = { credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    opts.method = "POST";
    opts.headers["Content-Type"] = "application/json";
    opts.headers["X-CSRF-Token"] = CSRF;
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  let data;
  try { data = await r.json(); } catch (e) { data = { error: r.status + " " + r.statusText }; }
  if (!r.ok) throw new Error(data.error || r.statusText);
  return data;
}

function qs(params) {
  return new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== null)).toString();
}

function bytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0, v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i ? v.toFixed(1) : v) + " " + units[i];
}

function age(secs) {
  if (secs < 120) return Math.max(0, Math.round(secs)) + " s ago";
  if (secs < 7200) return Math.round(secs / 60) + " min ago";
  if (secs < 172800) return Math.round(secs / 3600) + " h ago";
  return Math.round(secs / 86400) + " days ago";
}

function when(rfc) { return rfc ? rfc.replace("T", " ").replace(/([+-]\d\d:\d\d|Z)$/, " UTC$1").replace("UTC+00:00", "UTC").replace("UTCZ", "UTC") : ""; }

function say(text) { document.getElementById("status").textContent = text; }

function errorBox(e) { return h("p", { class: "error", role: "alert", text: String(e.message || e) }); }

function table(headers, rows, cls) {
  return h("div", { class: "scroll" },
    h("table", { class: cls || "" },
      h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col", text: t })))),
      h("tbody", {}, rows)));
}

function cell(label, ...content) { return h("td", { "data-label": label }, ...content); }

function param(name) { return new URLSearchParams(location.search).get(name); }

function browseHref(src, snap, path) { return "/browse?" + qs({ src, snap, path }); }

function parentOf(path) {
  const i = path.replace(/\/+$/, "").lastIndexOf("/");
  return i <= 0 ? "/" : path.slice(0, i);
}

function join(dir, name) { return (dir === "/" ? "" : dir) + "/" + name; }

// ---- jobs ----------------------------------------------------------------

// Shows a job's progress in `box` until it ends, then calls done(job).
function watchJob(id, box, done) {
  const bar = h("progress", { max: 1, value: 0, "aria-label": "Progress" });
  const line = h("p", { class: "progress-text", "aria-live": "polite" });
  const cancel = h("button", { type: "button", class: "secondary", text: "Cancel",
    onclick: async () => { cancel.disabled = true; try { await api(`/api/jobs/${id}/cancel`, {}); } catch (e) { say(e.message); } } });
  box.replaceChildren(h("div", { class: "job" }, bar, line, cancel));
  const tick = async () => {
    let j;
    try { j = await api(`/api/jobs/${id}`); } catch (e) { box.replaceChildren(errorBox(e)); return; }
    if (j.total_bytes > 0) { bar.max = j.total_bytes; bar.value = j.bytes; }
    else if (j.total_files > 0) { bar.max = j.total_files; bar.value = j.files; }
    else bar.removeAttribute("value");
    const parts = [j.phase || "starting", `${j.files}${j.total_files ? " / " + j.total_files : ""} files`,
      `${bytes(j.bytes)}${j.total_bytes ? " / " + bytes(j.total_bytes) : ""}`];
    if (j.walked) parts.push(`${j.walked} entries seen`);
    if (j.rate_bytes_per_sec > 0) parts.push(bytes(j.rate_bytes_per_sec) + "/s");
    if (j.eta_secs !== null && j.eta_secs !== undefined) parts.push("about " + Math.round(j.eta_secs) + " s left");
    if (j.cancel_requested) parts.push("cancelling…");
    line.textContent = parts.join(" · ");
    if (j.state === "running") { setTimeout(tick, 300); return; }
    cancel.remove();
    bar.remove();
    if (j.state === "failed") line.replaceWith(errorBox(new Error(j.error)));
    else line.remove();
    done(j);
  };
  tick();
}

// ---- dashboard -----------------------------------------------------------

async function dashboard() {
  const d = await api("/api/overview");
  const rows = d.archives.map((a) => {
    const last = a.last;
    const status = a.error ? h("span", { class: "bad", text: "unreadable: " + a.error })
      : a.warnings.length ? h("ul", { class: "warnings" }, a.warnings.map((w) => h("li", { text: w })))
      : h("span", { class: "ok", text: "OK" });
    return h("tr", {},
      cell("Archive", h("a", { href: "/archive/" + encodeURIComponent(a.name), text: a.name }), a.read_only ? " (read-only)" : ""),
      cell("Last snapshot", last ? [h("span", { text: when(last.time) }), h("br"), h("span", { class: "muted", text: age(last.age_secs) })] : "none"),
      cell("Files", last && last.header ? String(last.header.counts.files) : ""),
      cell("Size", last && last.header ? bytes(last.header.counts.content_bytes) : ""),
      cell("Snapshots", String(a.snapshots)),
      cell("Repository", a.repository),
      cell("Schedule", a.schedules.length ? a.schedules.map((s) => s.when + (s.enabled ? "" : " (not enabled)")).join(", ") : "none"),
      cell("Status", status));
  });
  const repos = d.repositories.map((r) => h("tr", {},
    cell("Repository", r.name),
    cell("Location", h("code", { text: r.location })),
    cell("Items", r.stats.error ? "" : String(r.stats.referenced_items)),
    cell("Content", r.stats.error ? "" : bytes(r.stats.content_bytes)),
    cell("Stored", r.stats.error ? h("span", { class: "bad", text: r.stats.error }) : bytes(r.stats.stored_bytes)),
    cell("Unreferenced", r.stats.error ? "" : `${r.stats.unreferenced_items} (${bytes(r.stats.unreferenced_stored_bytes)})`),
    cell("Lock", r.lock ? h("span", { class: "warn", text: "held by " + r.lock }) : "free")));
  app.replaceChildren(
    h("h1", { text: "Dashboard" }),
    h("section", { "aria-labelledby": "h-archives" }, h("h2", { id: "h-archives", text: "Archives" }),
      d.archives.length ? table(["Archive", "Last snapshot", "Files", "Size", "Snapshots", "Repository", "Schedule", "Status"], rows, "cards")
        : h("p", { text: "No archive is configured yet: create one with `epygibus new`, or open a snapshot directory." })),
    h("section", { "aria-labelledby": "h-repos" }, h("h2", { id: "h-repos", text: "Repositories" }),
      table(["Repository", "Location", "Items", "Content", "Stored", "Unreferenced", "Lock"], repos, "cards")));
}

// ---- archive page ----------------------------------------------------------

async function archivePage(name) {
  const a = await api("/api/archives/" + encodeURIComponent(name));
  const src = "A:" + a.name;
  const jobBox = h("div", { class: "jobbox" });
  const backup = h("button", { type: "button", text: "Back up now", disabled: a.read_only,
    onclick: async () => {
      backup.disabled = true;
      try {
        const { job } = await api("/api/backup", { archive: a.name });
        watchJob(job, jobBox, (j) => {
          if (j.state === "done") {
            const r = j.result;
            jobBox.append(h("p", { class: "ok", text: `Snapshot ${r.snapshot} written: ${r.header.counts.files} files, ${r.header.files_read} read, ${bytes(r.header.new_stored_bytes)} new` + (r.problem_count ? `, ${r.problem_count} skipped` : "") + "." }));
            refreshSnapshots();
          }
          backup.disabled = false;
        });
      } catch (e) { jobBox.replaceChildren(errorBox(e)); backup.disabled = false; }
    } });
  const snapBox = h("div", {});
  const drawSnapshots = (list) => {
    const rows = list.map((s) => h("tr", {},
      cell("Snapshot", h("a", { href: browseHref(src, s.name), text: s.name })),
      cell("Files", s.header ? String(s.header.counts.files) : ""),
      cell("Size", s.header ? bytes(s.header.counts.content_bytes) : ""),
      cell("Read", s.header ? String(s.header.files_read) : ""),
      cell("New", s.header ? `${s.header.new_items} (${bytes(s.header.new_stored_bytes)})` : ""),
      cell("Skipped", s.header ? String(s.header.skipped) : ""),
      cell("Took", s.header ? s.header.elapsed_secs.toFixed(1) + " s" : ""),
      cell("Snapshot file", bytes(s.file_bytes) + (s.compressed ? " (gzip)" : "")),
      cell("Status", s.error ? h("span", { class: "bad", text: s.error }) : s.header && s.header.salvaged_from ? h("span", { class: "warn", text: "salvaged" }) : "OK")));
    snapBox.replaceChildren(list.length ? table(["Snapshot", "Files", "Size", "Read", "New", "Skipped", "Took", "Snapshot file", "Status"], rows, "cards snapshots")
      : h("p", { text: "No snapshot yet." }));
    fillDiff(list);
  };
  const refreshSnapshots = async () => { const b = await api("/api/archives/" + encodeURIComponent(name)); drawSnapshots(b.snapshots); };

  // Diff between two snapshots.
  const oldSel = h("select", { id: "diff-old" });
  const newSel = h("select", { id: "diff-new" });
  const diffPath = h("input", { id: "diff-path", type: "text", placeholder: "/ (everything)" });
  const diffOut = h("div", {});
  const fillDiff = (list) => {
    const opts = (sel, pick) => { sel.replaceChildren(...list.map((s, i) => h("option", { value: s.name, text: s.name, selected: i === pick }))); };
    opts(newSel, 0); opts(oldSel, Math.min(1, list.length - 1));
  };
  const diffForm = h("form", { class: "inline", onsubmit: async (ev) => {
    ev.preventDefault();
    diffOut.replaceChildren(h("p", { class: "muted", text: "Comparing…" }));
    try {
      const d = await api("/api/diff?" + qs({ src, old: oldSel.value, new: newSel.value, path: diffPath.value || undefined }));
      const s = d.summary;
      diffOut.replaceChildren(
        h("p", { text: `${d.total_changes} change(s) from ${d.old.name} to ${d.new.name}` }),
        h("ul", { class: "diff" }, d.changes.map((c) => h("li", {}, h("span", { class: "marker m" + c.modifier, text: c.modifier }), " ", h("code", { text: c.path })))),
        s ? h("p", { class: "muted", text: ["added", "removed", "changed"].map((k) =>
          `${k}: ${s[k].files} files, ${s[k].dirs} directories, ${s[k].links} symlinks`).join("; ") +
          `; ${bytes(s.bytes_added)} added, ${bytes(s.bytes_removed)} removed` }) : "");
    } catch (e) { diffOut.replaceChildren(errorBox(e)); }
  } },
    h("label", { for: "diff-old", text: "Older" }), oldSel,
    h("label", { for: "diff-new", text: "Newer" }), newSel,
    h("label", { for: "diff-path", text: "Below path" }), diffPath,
    h("button", { type: "submit", text: "Compare" }));

  // Retention policy: preview, then apply.
  const policyOut = h("div", {});
  const policy = a.policy && !a.policy.error
    ? h("div", {},
      h("p", {}, "Policy: ", h("strong", { text: a.policy.text })),
      h("button", { type: "button", class: "secondary", text: "Preview what forget would remove", onclick: async () => {
        policyOut.replaceChildren(h("p", { class: "muted", text: "Working…" }));
        try {
          const r = await api("/api/forget-preview?" + qs({ archive: a.name }));
          const apply = h("button", { type: "button", class: "danger", text: `Remove ${r.to_remove} snapshot(s) now`, disabled: r.to_remove === 0,
            onclick: async () => {
              if (!confirm(`Remove ${r.to_remove} snapshot(s) of ${a.name}? Their content is freed by the next prune.`)) return;
              apply.disabled = true;
              try {
                const done = await api("/api/forget", { archive: a.name });
                policyOut.replaceChildren(h("p", { class: "ok", text: `Removed ${done.removed} snapshot(s).` }));
                refreshSnapshots();
              } catch (e) { policyOut.append(errorBox(e)); }
            } });
          policyOut.replaceChildren(
            table(["Snapshot", "Verdict", "Why kept"], r.snapshots.map((v) => h("tr", {},
              cell("Snapshot", v.name), cell("Verdict", h("span", { class: v.keep ? "ok" : "bad", text: v.keep ? "keep" : "remove" })),
              cell("Why kept", v.reasons.join(", ")))), "cards"),
            apply);
        } catch (e) { policyOut.replaceChildren(errorBox(e)); }
      } }), policyOut)
    : h("p", { text: a.policy && a.policy.error ? "The stored policy cannot be read: " + a.policy.error
      : "No retention policy is stored: snapshots are kept until deleted (set one with `epygibus policy`)." });

  app.replaceChildren(
    h("p", { class: "crumbs" }, h("a", { href: "/", text: "Dashboard" }), " › archive"),
    h("h1", { text: a.name }),
    h("dl", { class: "facts" },
      h("dt", { text: "Repository" }), h("dd", { text: a.repository }),
      h("dt", { text: "Snapshot directory" }), h("dd", {}, h("code", { text: a.snapshot_dir })),
      h("dt", { text: "Includes" }), h("dd", { text: a.includes.join(", ") }),
      a.set_aside.length ? [h("dt", { text: "Set aside (damaged)" }), h("dd", { class: "warn", text: a.set_aside.join(", ") })] : []),
    h("div", { class: "actions" }, backup,
      a.snapshots.length ? h("a", { class: "button secondary", href: browseHref(src, a.snapshots[0].name), text: "Browse the newest snapshot" }) : "",
      a.read_only ? h("span", { class: "muted", text: "Read-only here: another machine backs it up." }) : ""),
    jobBox,
    h("section", { "aria-labelledby": "h-snaps" }, h("h2", { id: "h-snaps", text: "Snapshots" }), snapBox),
    h("section", { "aria-labelledby": "h-ret" }, h("h2", { id: "h-ret", text: "Retention" }), policy),
    h("section", { "aria-labelledby": "h-diff" }, h("h2", { id: "h-diff", text: "What changed" }), diffForm, diffOut));
  drawSnapshots(a.snapshots);
}

// ---- snapshot browser ------------------------------------------------------

async function browsePage() {
  const src = param("src");
  let path = param("path") || "/";
  let snap = param("snap");
  const snaps = (await api("/api/snapshots?" + qs({ src }))).snapshots;
  if (!snaps.length) throw new Error("no snapshots here");
  if (!snap) snap = snaps[0].name;
  if (!param("path")) {
    // Opened without a path: go down the single-directory chain from `/`
    // to where the backed-up files are (e.g. /home/me/Documents).
    for (let i = 0; i < 64; i++) {
      const p = await api("/api/list?" + qs({ src, snap, path, limit: 2 }));
      if (p.total !== 1 || p.entries[0].kind !== "dir") break;
      path = join(path, p.entries[0].name);
    }
    window.history.replaceState(null, "", browseHref(src, snap, path));
  }
  const selected = new Set();
  let offset = 0;
  let filter = "";
  const title = src.startsWith("A:") ? src.slice(2) : src.slice(2);

  const snapSel = h("select", { id: "snap", onchange: () => { location.href = browseHref(src, snapSel.value, path); } },
    snaps.map((s) => h("option", { value: s.name, text: s.name, selected: s.name === snap })));
  const crumbs = h("nav", { class: "path", "aria-label": "Path" });
  const filterIn = h("input", { id: "filter", type: "search", placeholder: "Name contains…" });
  const listBox = h("div", { class: "listing" });
  const pager = h("div", { class: "pager" });
  const details = h("aside", { class: "details", "aria-label": "Details" }, h("p", { class: "muted", text: "Choose a file to see its details." }));
  const restoreBox = h("section", { class: "restore", "aria-labelledby": "h-restore" });

  const drawCrumbs = () => {
    const parts = path.split("/").filter(Boolean);
    const links = [h("a", { href: browseHref(src, snap, "/"), text: "/" })];
    let acc = "";
    for (const p of parts) { acc += "/" + p; links.push(" ", h("a", { href: browseHref(src, snap, acc), text: p + "/" })); }
    crumbs.replaceChildren(...links);
  };

  const showDetails = async (e, full) => {
    const rows = [["Name", e.name], ["Kind", e.kind], [e.kind === "dir" ? "Entries" : "Size", e.kind === "dir" ? String(e.size) : bytes(e.size) + ` (${e.size} bytes)`],
      ["Mode", e.mode], ["Owner", `${e.uid}:${e.gid}`], ["Modified", when(e.mtime)], ["Links", String(e.nlink)]];
    if (e.token) rows.push(["Token", e.token]);
    if (e.target !== null && e.target !== undefined) rows.push(["Target", e.target]);
    const preview = h("div", { class: "preview" });
    const history = h("div", {});
    const q = qs({ src, snap, path: full });
    const buttons = [];
    if (e.kind === "file") {
      buttons.push(h("a", { class: "button", href: "/api/download?" + q, download: e.name, text: "Download" }));
      buttons.push(h("button", { type: "button", class: "secondary", text: "Preview", onclick: async () => {
        preview.replaceChildren(h("p", { class: "muted", text: "Loading…" }));
        try {
          const p = await api("/api/preview?" + q);
          if (p.kind === "text") preview.replaceChildren(h("pre", { tabindex: 0, text: p.text + (p.truncated ? "\n…" : "") }));
          else if (p.kind === "image") preview.replaceChildren(h("img", { src: "/api/image?" + q, alt: "Preview of " + e.name }));
          else preview.replaceChildren(h("p", { text: "No preview: this is not text or a PNG, JPEG, GIF or WebP image. Download it instead." }));
        } catch (err) { preview.replaceChildren(errorBox(err)); }
      } }));
    }
    if (e.kind === "dir") buttons.push(h("a", { class: "button", href: "/api/download-dir?" + q, text: "Download as .tar" }));
    if (src.startsWith("A:") || src.startsWith("E:")) buttons.push(h("button", { type: "button", class: "secondary", text: "History", onclick: async () => {
      history.replaceChildren(h("p", { class: "muted", text: "Looking through every snapshot…" }));
      try {
        const hi = await api("/api/history?" + qs({ src, path: full }));
        history.replaceChildren(h("h3", { text: `${hi.versions.length} version(s) in ${hi.snapshots} snapshots` }),
          h("ul", { class: "history" }, hi.versions.map((v) => h("li", {},
            h("a", { href: browseHref(src, v.last.name, parentOf(full)), text: v.first.name === v.last.name ? v.first.name : `${v.first.name} … ${v.last.name}` }),
            ` — ${v.kind}, ${bytes(v.size)}, modified ${when(v.mtime)}`))));
      } catch (err) { history.replaceChildren(errorBox(err)); }
    } }));
    const heading = h("h2", { text: e.name, tabindex: -1 });
    details.replaceChildren(heading,
      h("dl", { class: "facts" }, rows.map(([k, v]) => [h("dt", { text: k }), h("dd", { text: v })])),
      h("div", { class: "actions" }, buttons), preview, history);
    // Keyboard and screen-reader users land on what they opened; on a
    // narrow screen the details are below the list, so bring them up.
    heading.focus({ preventScroll: window.innerWidth > 900 });
  };

  const load = async () => {
    listBox.setAttribute("aria-busy", "true");
    let page;
    try {
      page = await api("/api/list?" + qs({ src, snap, path, offset, limit: PAGE, filter: filter || undefined }));
    } catch (e) { listBox.replaceChildren(errorBox(e)); return; }
    listBox.removeAttribute("aria-busy");
    const rows = page.entries.map((e) => {
      const full = join(path, e.name);
      const box = h("input", { type: "checkbox", "aria-label": "Select " + e.name, checked: selected.has(full),
        onchange: () => { box.checked ? selected.add(full) : selected.delete(full); drawRestore(); } });
      const nameEl = e.kind === "dir"
        ? h("a", { href: browseHref(src, snap, full), class: "dir", text: e.name + "/" })
        : h("button", { type: "button", class: "link", text: e.name + (e.kind === "symlink" ? " → " + e.target : ""), onclick: () => showDetails(e, full) });
      return h("tr", {}, h("td", { class: "sel" }, box), cell("Name", nameEl),
        cell("Size", e.kind === "dir" ? `${e.size} ${e.size === 1 ? "entry" : "entries"}` : bytes(e.size)), cell("Modified", when(e.mtime)), cell("Mode", e.mode));
    });
    listBox.replaceChildren(table(["", "Name", "Size", "Modified", "Mode"], rows, "files"));
    const end = Math.min(page.total, offset + page.entries.length);
    pager.replaceChildren(
      h("button", { type: "button", class: "secondary", text: "‹ Previous", disabled: offset === 0, onclick: () => { offset = Math.max(0, offset - PAGE); load(); } }),
      h("span", { text: page.total ? ` ${offset + 1}–${end} of ${page.total} ` : " empty " }),
      h("button", { type: "button", class: "secondary", text: "Next ›", disabled: end >= page.total, onclick: () => { offset += PAGE; load(); } }));
    say(`${page.total} entries in ${page.path}`);
  };

  let timer = null;
  filterIn.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => { filter = filterIn.value; offset = 0; load(); }, 200); });

  // Restore or extract the selection.
  const drawRestore = () => {
    const items = [...selected];
    const mode = h("fieldset", {}, h("legend", { text: "Where to" }),
      h("label", {}, h("input", { type: "radio", name: "mode", value: "into", checked: true }), " Into a directory"),
      h("label", {}, h("input", { type: "radio", name: "mode", value: "original" }), " Back to the original place"));
    const dir = h("input", { id: "into-dir", type: "text", placeholder: "/home/me/restored" });
    const newName = h("input", { id: "with-name", type: "text", placeholder: "(keep the name)", disabled: items.length !== 1 });
    const overwrite = h("input", { id: "overwrite", type: "checkbox" });
    const out = h("div", { class: "jobbox" });
    const go = h("button", { type: "submit", text: "Restore", disabled: !items.length });
    const form = h("form", { onsubmit: async (ev) => {
      ev.preventDefault();
      const m = form.querySelector('input[name="mode"]:checked').value;
      go.disabled = true;
      try {
        const { job } = await api("/api/restore", { src, snap, paths: items, mode: m, into_dir: m === "into" ? dir.value : undefined,
          with_name: m === "into" && newName.value ? newName.value : undefined, overwrite: overwrite.checked });
        watchJob(job, out, (j) => {
          go.disabled = false;
          if (j.state !== "done") return;
          const r = j.result;
          out.append(h("div", { class: "summary" },
            h("p", { class: "ok", text: `Written: ${r.files} files (${bytes(r.bytes)}), ${r.dirs} directories, ${r.links} symlinks; ${r.unchanged} already matched.` }),
            r.moved_aside.length ? h("details", {}, h("summary", { text: `${r.moved_aside.length} moved aside` }),
              h("ul", {}, r.moved_aside.map((x) => h("li", {}, h("code", { text: x.path }), " → ", h("code", { text: x.to }))))) : "",
            r.problems.length ? h("details", { open: true }, h("summary", { class: "bad", text: `${r.problems.length} skipped` }),
              h("ul", {}, r.problems.map((p) => h("li", { text: p })))) : ""));
        });
      } catch (e) { out.replaceChildren(errorBox(e)); go.disabled = false; }
    } },
      mode,
      h("div", { class: "field" }, h("label", { for: "into-dir", text: "Directory (absolute path)" }), dir),
      h("div", { class: "field" }, h("label", { for: "with-name", text: "New name (one item only)" }), newName),
      h("div", { class: "field check" }, overwrite, h("label", { for: "overwrite", text: " Overwrite differing files (otherwise they are moved aside)" })),
      go, out);
    restoreBox.replaceChildren(h("h2", { id: "h-restore", text: `Restore (${items.length} selected)` }),
      items.length ? h("ul", { class: "chosen" }, items.slice(0, 10).map((p) => h("li", {}, h("code", { text: p }))), items.length > 10 ? h("li", { text: `… and ${items.length - 10} more` }) : "")
        : h("p", { class: "muted", text: "Tick files or directories to restore them." }),
      form);
  };

  drawCrumbs();
  app.replaceChildren(
    h("p", { class: "crumbs" }, h("a", { href: "/", text: "Dashboard" }), " › ",
      src.startsWith("A:") ? h("a", { href: "/archive/" + encodeURIComponent(title), text: title }) : h("span", { text: title })),
    h("h1", { text: "Browse " + title }),
    h("div", { class: "toolbar" },
      h("div", { class: "field" }, h("label", { for: "snap", text: "Snapshot" }), snapSel),
      h("div", { class: "field" }, h("label", { for: "filter", text: "Filter" }), filterIn)),
    crumbs,
    h("div", { class: "browser" }, h("div", { class: "main-col" }, listBox, pager,
      h("p", {}, h("button", { type: "button", class: "secondary", text: "Details of this directory", onclick: async () => {
        const e = await api("/api/stat?" + qs({ src, snap, path })); showDetails(e, path);
      } }))), details),
    restoreBox);
  drawRestore();
  await load();
}

// ---- search ------------------------------------------------------------------

async function searchPage() {
  const d = await api("/api/overview");
  const arch = h("select", { id: "s-archive" }, h("option", { value: "", text: "every archive" }),
    d.archives.map((a) => h("option", { value: a.name, text: a.name })));
  const pat = h("input", { id: "s-pattern", type: "search", required: true, placeholder: "cv*.odt, notes.txt, /home/*/Documents/**" });
  const out = h("div", {});
  const form = h("form", { class: "inline", onsubmit: async (ev) => {
    ev.preventDefault();
    out.replaceChildren(h("p", { class: "muted", text: "Searching every snapshot…" }));
    try {
      const r = await api("/api/find?" + qs({ archive: arch.value || undefined, pattern: pat.value }));
      const blocks = r.archives.map((a) => h("section", {}, h("h2", { text: `${a.archive}: ${a.snapshots.length} of ${a.searched} snapshots match` }),
        a.snapshots.map((s) => h("details", { open: a.snapshots.indexOf(s) === 0 },
          h("summary", { text: `${s.name} — ${s.error ? "unreadable: " + s.error : s.hits + " match(es)"}` }),
          s.matches ? h("ul", {}, s.matches.map((m) => h("li", {},
            h("a", { href: browseHref("A:" + a.archive, s.name, m.kind === "dir" ? m.path : parentOf(m.path)), text: m.path }),
            ` — ${m.kind}, ${bytes(m.size)}, ${when(m.mtime)}`))) : ""))));
      out.replaceChildren(...(blocks.length ? blocks : [h("p", { text: "Nothing found." })]));
    } catch (e) { out.replaceChildren(errorBox(e)); }
  } },
    h("label", { for: "s-pattern", text: "Name or glob" }), pat,
    h("label", { for: "s-archive", text: "In" }), arch,
    h("button", { type: "submit", text: "Search" }));
  app.replaceChildren(h("h1", { text: "Search" }), form, out);
  pat.focus();
}

// ---- housekeeping ------------------------------------------------------------

async function housekeepingPage() {
  const d = await api("/api/overview");
  const blocks = d.repositories.map((r, i) => {
    const readData = h("input", { type: "checkbox", id: "rd-" + i });
    const out = h("div", { class: "jobbox" });
    const run = (path, body, show) => async (ev) => {
      const btn = ev.target; btn.disabled = true;
      try {
        const { job } = await api(path, body());
        watchJob(job, out, (j) => { btn.disabled = false; if (j.state === "done") out.append(show(j.result)); });
      } catch (e) { out.replaceChildren(errorBox(e)); btn.disabled = false; }
    };
    const showCheck = (r) => h("div", { class: "summary" },
      h("p", { class: r.ok ? "ok" : "bad", text: r.ok ? `No problems: ${r.snapshots} snapshots, ${r.items_checked} items checked${r.read_data ? " (content read and hashed)" : ""}.` : `${r.problems.length} problem(s) found.` }),
      r.problems.length ? h("ul", {}, r.problems.map((p) => h("li", { class: "bad", text: p }))) : "",
      r.notes.length ? h("details", {}, h("summary", { text: `${r.notes.length} note(s)` }), h("ul", {}, r.notes.map((p) => h("li", { text: p })))) : "");
    const showPrune = (r) => h("p", { class: "ok", text: `Removed ${r.items} unreferenced items (${bytes(r.content_bytes)}); ${bytes(r.bytes_freed)} freed; ${r.packs_removed} packs removed, ${r.packs_rewritten} rewritten` + (r.kept_young ? `; ${r.kept_young} recently released items kept` : "") + "." });
    return h("section", { class: "card", "aria-labelledby": "repo-" + i },
      h("h2", { id: "repo-" + i, text: r.name }),
      h("p", {}, h("code", { text: r.location }), r.lock ? h("span", { class: "warn", text: " — locked by " + r.lock }) : ""),
      h("div", { class: "actions" },
        h("button", { type: "button", text: "Check", onclick: run("/api/check", () => ({ repo: r.name, read_data: readData.checked }), showCheck) }),
        h("span", { class: "check" }, readData, h("label", { for: "rd-" + i, text: " read and hash all content" })),
        h("button", { type: "button", class: "secondary", text: "Prune", onclick: run("/api/prune", () => ({ repo: r.name }), showPrune) })),
      out);
  });
  app.replaceChildren(h("h1", { text: "Housekeeping" }),
    h("p", { class: "muted", text: "Check verifies that every snapshot's content is present (and, reading it, intact) and that no count is too low. Prune removes content no snapshot uses." }),
    ...(blocks.length ? blocks : [h("p", { text: "No repository is configured." })]));
}

// ---- rescue ------------------------------------------------------------------

function rescuePage() {
  const dir = h("input", { id: "e-dir", type: "text", required: true, placeholder: "/mnt/nas/epygibus.d/snapshots/host/me/docs" });
  const out = h("div", {});
  const form = h("form", { class: "inline", onsubmit: async (ev) => {
    ev.preventDefault();
    const src = "E:" + dir.value.trim();
    try {
      const r = await api("/api/snapshots?" + qs({ src }));
      if (!r.snapshots.length) throw new Error("no snapshots there");
      location.href = browseHref(src, r.snapshots[0].name);
    } catch (e) { out.replaceChildren(errorBox(e)); }
  } }, h("label", { for: "e-dir", text: "Snapshot directory" }), dir, h("button", { type: "submit", text: "Open" }));
  app.replaceChildren(h("h1", { text: "Open a snapshot directory" }),
    h("p", { text: "Without any configuration (after a reinstall, on another machine): give the directory that holds an archive's snapshot files. Its snapshots say where their repository is, so you can browse, download and restore from it." }),
    form, out);
  dir.focus();
}

// ---- router ------------------------------------------------------------------

async function route() {
  const p = location.pathname;
  try {
    if (p === "/") await dashboard();
    else if (p.startsWith("/archive/")) await archivePage(decodeURIComponent(p.slice(9)));
    else if (p === "/browse") await browsePage();
    else if (p === "/search") await searchPage();
    else if (p === "/housekeeping") await housekeepingPage();
    else if (p === "/rescue") rescuePage();
    else app.replaceChildren(h("h1", { text: "Not found" }));
  } catch (e) {
    app.replaceChildren(h("h1", { text: "Something went wrong" }), errorBox(e), h("p", {}, h("a", { href: "/", text: "Back to the dashboard" })));
  }
  for (const a of document.querySelectorAll("header nav a")) {
    if (a.getAttribute("href") === p) a.setAttribute("aria-current", "page");
  }
}

route();
