// The lth web view: a single page over the REST API (no framework, no build step).
//
// Everything shown comes from the API with the same key and owner isolation as any client: the
// key is asked for once, kept in sessionStorage (gone when the browser session ends) and sent
// as an Authorization header, never in a URL. Text from the server (names, tags, specs, errors)
// is only ever set as textContent, never parsed as HTML.
"use strict";

const KEY = "lth.apiKey";
const FIGURES = [
  ["accuracy_curves", "Test accuracy during training"],
  ["early_stop_iteration", "Early-stop iteration"],
  ["early_stop_accuracy", "Accuracy at early stop"],
  ["method_comparison", "Every method (ticket, controls, pruning at init)"],
];
// The API's vocabulary (GET /meta: store.status's values, lth_core.runs's grammar), read once
// before the first page is drawn, so the page never lists a status the server does not have.
let STATUSES = [];
let ACTIVE = new Set();
let meta = null; // the promise of GET /meta; reset when it failed, so the next page retries
const PAGE = 25;
let timer = null; // the one poll loop of the page shown
let stream = null; // the AbortController of the event stream the page follows
let generation = 0; // bumped when the page changes: late callbacks of the old one do nothing
let views = []; // Vega views to finalize when the page changes

// ------------------------------------------------------------------ DOM and formatting helpers

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  return fill(node, ...children);
}

// Replaces a node's children (nested arrays flattened; null, undefined and false skipped).
function fill(node, ...children) {
  node.replaceChildren();
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
const $ = (sel) => document.querySelector(sel);
const pct = (x, d = 1) => (typeof x === "number" ? `${(100 * x).toFixed(d)}%` : "–");
const num = (x) => (typeof x === "number" ? x.toLocaleString("en-US") : "–");
function when(t) {
  if (!t) return "–";
  const d = new Date(t);
  const p2 = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p2(d.getMonth() + 1)}-${p2(d.getDate())} ${p2(d.getHours())}:${p2(d.getMinutes())}`;
}
function duration(seconds) {
  if (typeof seconds !== "number" || !isFinite(seconds)) return null;
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return h ? `${h} h ${m} min` : m ? `${m} min ${r} s` : `${r} s`;
}
const badge = (status) => el("span", { class: `badge ${status}`, "data-status": status }, status);

// ------------------------------------------------------------------ the API

class Unauthorized extends Error {}

function headers(extra) {
  const h = { Accept: "application/json", ...(extra || {}) };
  const key = sessionStorage.getItem(KEY);
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

async function api(path, opts = {}) {
  const response = await fetch(path, { ...opts, headers: headers(opts.headers) });
  if (response.status === 401) throw new Unauthorized(await message(response));
  if (!response.ok) throw new Error(await message(response));
  return response;
}

async function message(response) {
  try {
    const body = await response.json();
    return body.error ? body.error.message : `HTTP ${response.status}`;
  } catch (_) {
    return `HTTP ${response.status}`;
  }
}

// GETs of JSON are conditional: the last ETag of each path is sent back as If-None-Match and a
// 304 reuses the body kept with it. A 503 (the API sheds load that way) is retried after its
// Retry-After, a few times.
const cache = new Map();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function retryAfterMs(response) {
  const seconds = Number(response.headers.get("Retry-After"));
  return 1000 * (isFinite(seconds) && seconds > 0 ? Math.min(seconds, 30) : 1);
}

async function getJson(path) {
  for (let attempt = 0; ; attempt++) {
    const cached = cache.get(path);
    const response = await fetch(path, { headers: headers(cached ? { "If-None-Match": cached.etag } : {}) });
    if (response.status === 304 && cached) return cached.body;
    if (response.status === 503 && attempt < 5) {
      await sleep(retryAfterMs(response));
      continue;
    }
    if (response.status === 401) throw new Unauthorized(await message(response));
    if (!response.ok) throw new Error(await message(response));
    const body = await response.json();
    const etag = response.headers.get("ETag");
    if (etag) {
      if (cache.size > 200) cache.clear();
      cache.set(path, { etag, body });
    }
    return body;
  }
}

// Follows GET /experiments/{id}/events (fetch, not EventSource: the key goes in a header),
// calling onEvent(name) for each event. Resolves "end" after the experiment's end event,
// "closed" when the server closed the stream, "failed" when it cannot be followed: an error,
// or 15 s without a byte (the server sends a comment every few seconds; a proxy that buffers
// the stream sends nothing), which is when the page falls back to polling.
async function follow(id, onEvent) {
  const controller = new AbortController();
  stream = controller;
  let quiet = null;
  const arm = () => {
    clearTimeout(quiet);
    quiet = setTimeout(() => controller.abort(), 15000);
  };
  try {
    arm();
    const response = await fetch(`/experiments/${id}/events`, {
      headers: headers({ Accept: "text/event-stream" }), signal: controller.signal });
    if (!response.ok || !(response.headers.get("Content-Type") || "").startsWith("text/event-stream")) return "failed";
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return "closed";
      arm();
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = "message", data = null;
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data = line.slice(5).trim();
        }
        if (data === null) continue; // a comment (heartbeat)
        if (name === "end") return "end";
        onEvent(name);
      }
    }
  } catch (_) {
    return "failed";
  } finally {
    clearTimeout(quiet);
    if (stream === controller) stream = null;
  }
}

async function download(path, filename) {
  const blob = await (await api(path, { headers: { Accept: "*/*" } })).blob();
  const url = URL.createObjectURL(blob);
  const a = el("a", { href: url, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function action(label, fn, attrs = {}) {
  const button = el("button", attrs, label);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await fn();
    } catch (err) {
      handle(err);
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

// ------------------------------------------------------------------ key, errors, routing

function keyStatus() {
  const box = $("#key-status");
  box.replaceChildren();
  if (sessionStorage.getItem(KEY)) {
    box.append("API key set for this session", action("Forget key", async () => {
      sessionStorage.removeItem(KEY);
      route();
    }, { id: "forget-key" }));
  }
}

function login(reason) {
  stop();
  const input = el("input", { type: "password", id: "api-key", autocomplete: "off", placeholder: "lth_…" });
  const form = el("form", { id: "key-form", class: "card login" },
    el("h1", {}, "API key needed"),
    el("p", { class: "muted" }, reason),
    el("label", { for: "api-key" }, "API key (kept for this browser session only)"),
    input,
    el("button", { class: "primary", type: "submit" }, "Continue"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (input.value.trim()) sessionStorage.setItem(KEY, input.value.trim());
    route();
  });
  $("#main").replaceChildren(form);
  keyStatus();
  input.focus();
}

function handle(err) {
  if (err instanceof Unauthorized) {
    if (sessionStorage.getItem(KEY)) sessionStorage.removeItem(KEY);
    login(err.message);
  } else {
    const box = $("#main .error-slot") || $("#main");
    box.prepend(el("div", { class: "error", role: "alert" }, String(err.message || err)));
  }
}

function stop() {
  if (timer) clearTimeout(timer);
  timer = null;
  generation += 1;
  if (stream) stream.abort();
  stream = null;
  views.forEach((v) => v.finalize());
  views = [];
}

function poll(fn, ms) {
  timer = setTimeout(async () => {
    try {
      await fn();
    } catch (err) {
      handle(err);
    }
  }, ms);
}

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, query] = raw.split("?");
  return { path, params: new URLSearchParams(query || "") };
}

function loadMeta() {
  if (!meta) {
    meta = getJson("/meta").then((body) => {
      STATUSES = body.statuses;
      ACTIVE = new Set(body.active_statuses);
      return body;
    }, (err) => {
      meta = null;
      throw err;
    });
  }
  return meta;
}

async function route() {
  stop();
  keyStatus();
  const { path, params } = parseHash();
  document.querySelectorAll("[data-nav]").forEach((a) => a.classList.remove("active"));
  try {
    await loadMeta();
    let m;
    if ((m = path.match(/^\/experiments\/([0-9a-fA-F]{32})$/))) await experimentPage(m[1]);
    else if (path === "/compare") {
      $('[data-nav="compare"]').classList.add("active");
      await comparePage(params);
    } else {
      $('[data-nav="list"]').classList.add("active");
      await listPage(params);
    }
  } catch (err) {
    handle(err);
  }
}

// ------------------------------------------------------------------ progress

function runFraction(exp) {
  const p = exp.progress || {};
  const levels = p.levels || 1;
  if (exp.status === "succeeded") return 1;
  let within = 0;
  if (typeof p.level === "number" && p.level >= p.levels_finished && p.iterations) {
    // The level's runs as the server counts them (every trial's, controls where controls_at
    // has them), in training order; p.kind is the one training now.
    const runs = Array.isArray(p.runs) && p.runs.length ? p.runs : [p.kind];
    const fraction = Math.min(1, (p.iteration || 0) / p.iterations);
    // A stacked level trains all its runs at once (p.kinds, kind "ticket+random_reinit").
    const stacked = Array.isArray(p.kinds) && p.kinds.length > 1;
    const index = Math.max(0, runs.indexOf(p.kind));
    within = stacked ? fraction : (index + fraction) / runs.length;
  }
  return Math.min(1, (p.levels_finished + within) / levels);
}

function progressText(exp) {
  const p = exp.progress || {};
  const parts = [`${p.levels_finished}/${p.levels} levels`];
  if (exp.status === "running" && typeof p.level === "number") {
    parts.push(`level ${p.level}`);
    if (p.kind) parts.push(p.kind);
    if (typeof p.iteration === "number") parts.push(`it ${num(p.iteration)}/${num(p.iterations)}`);
  }
  const eta = duration(p.eta_seconds);
  if (eta && ACTIVE.has(exp.status)) parts.push(`ETA ${eta}`);
  return parts.join(" · ");
}

function progressBar(exp) {
  const done = exp.status === "succeeded";
  return el("div", { class: "progress", "data-role": "progress" },
    el("div", { class: done ? "bar done" : "bar" },
      el("div", { style: `width: ${(100 * runFraction(exp)).toFixed(1)}%` })),
    el("small", { "data-role": "progress-text" }, progressText(exp)));
}

// ------------------------------------------------------------------ experiments list

function tagChips(tags, onclick) {
  return (tags || []).map((t) =>
    el("span", { class: "tag", title: `experiments tagged ${t}`, onclick: () => onclick(t) }, t));
}

async function listPage(params) {
  const status = params.get("status") || "";
  const tag = params.get("tag") || "";
  const offset = Number(params.get("offset") || 0);
  const query = new URLSearchParams({ limit: PAGE, offset });
  if (status) query.set("status", status);
  if (tag) query.set("tag", tag);
  const page = await getJson(`/experiments?${query}`);
  const go = (changes) => {
    const next = new URLSearchParams({ status, tag, offset: 0, ...changes });
    for (const [k, v] of [...next]) if (!v || v === "0") next.delete(k);
    location.hash = `#/?${next}`;
  };
  const statusSelect = el("select", { id: "status-filter", onchange: (e) => go({ status: e.target.value }) },
    ["", ...STATUSES].map((s) =>
      el("option", { value: s, selected: s === status }, s || "any status")));
  const tagInput = el("input", { type: "text", id: "tag-filter", placeholder: "tag", value: tag });
  tagInput.addEventListener("change", () => go({ tag: tagInput.value.trim() }));
  const selected = new Set();
  const compare = el("button", { id: "compare-selected", disabled: true }, "Compare selected");
  compare.addEventListener("click", () => (location.hash = `#/compare?ids=${[...selected].join(",")}`));

  const rows = page.items.map((exp) => {
    const t = exp.ticket;
    const box = el("input", { type: "checkbox", "aria-label": `select ${exp.name}` });
    box.addEventListener("change", () => {
      box.checked ? selected.add(exp.id) : selected.delete(exp.id);
      compare.disabled = selected.size < 1;
    });
    return el("tr", { "data-id": exp.id },
      el("td", {}, box),
      el("td", {}, el("a", { href: `#/experiments/${exp.id}`, class: "name" }, exp.name),
        el("div", { class: "muted", style: "font-size:11px" }, exp.id.slice(0, 8))),
      el("td", {}, badge(exp.status)),
      el("td", {}, progressBar(exp)),
      el("td", {}, exp.spec.model),
      el("td", {}, exp.spec.dataset && exp.spec.dataset.name),
      el("td", { class: "num" }, t ? pct(t.weights_remaining) : "–"),
      el("td", { class: "num" }, t ? pct(t.early_stop_test_accuracy, 2) : "–"),
      el("td", {}, when(exp.created_at)),
      el("td", {}, when(exp.finished_at)),
      el("td", {}, tagChips(exp.spec.tags, (x) => go({ tag: x }))));
  });
  const table = el("table", { id: "experiments" },
    el("thead", {}, el("tr", {}, ["", "name", "status", "progress", "model", "dataset",
      "ticket weights", "ticket accuracy", "created", "finished", "tags"].map((h, i) =>
      el("th", { class: i === 6 || i === 7 ? "num" : null }, h)))),
    el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 11, class: "muted" },
      "No experiments yet. Submit one with `lth submit spec.json` or POST /experiments."))));
  const last = Math.min(offset + PAGE, page.total);
  const pager = el("div", { class: "pager" },
    el("button", { disabled: offset === 0, onclick: () => go({ offset: Math.max(0, offset - PAGE) }) }, "← newer"),
    el("span", { class: "muted", id: "page-info" }, page.total ? `${offset + 1}–${last} of ${page.total}` : "0 of 0"),
    el("button", { disabled: last >= page.total, onclick: () => go({ offset: offset + PAGE }) }, "older →"));
  const groups = groupByTag(page.items);
  fill($("#main"), 
    el("div", { class: "headline" }, el("h1", {}, "Experiments"),
      el("span", { class: "muted" }, tag ? `tagged ${tag}` : "newest first")),
    el("div", { class: "error-slot" }),
    el("div", { class: "toolbar" }, statusSelect, tagInput,
      tag ? el("a", { href: `#/compare?tag=${encodeURIComponent(tag)}` }, `compare all tagged ${tag}`) : null,
      el("span", { class: "spacer" }), compare),
    table, pager, groups);
  if (page.items.some((e) => ACTIVE.has(e.status))) poll(() => refreshList(query), 2000);
}

function groupByTag(items) {
  const tags = new Map();
  for (const exp of items) for (const t of exp.spec.tags || []) tags.set(t, (tags.get(t) || 0) + 1);
  if (!tags.size) return null;
  return el("div", { class: "card", style: "margin-top:16px" }, el("h2", { style: "margin-top:0" }, "Tags on this page"),
    [...tags].sort().map(([t, n]) => el("span", { style: "margin-right:14px" },
      el("a", { href: `#/?tag=${encodeURIComponent(t)}` }, t), ` (${n}) · `,
      el("a", { href: `#/compare?tag=${encodeURIComponent(t)}` }, "compare"))));
}

async function refreshList(query) {
  const page = await getJson(`/experiments?${query}`);
  for (const exp of page.items) {
    const row = document.querySelector(`tr[data-id="${exp.id}"]`);
    if (!row) continue;
    row.children[2].replaceChildren(badge(exp.status));
    row.children[3].replaceChildren(progressBar(exp));
    const t = exp.ticket;
    row.children[6].textContent = t ? pct(t.weights_remaining) : "–";
    row.children[7].textContent = t ? pct(t.early_stop_test_accuracy, 2) : "–";
    row.children[9].textContent = when(exp.finished_at);
  }
  if (page.items.some((e) => ACTIVE.has(e.status))) poll(() => refreshList(query), 2000);
}

// ------------------------------------------------------------------ one experiment

async function embed(target, url) {
  const spec = await getJson(url);
  const box = target.querySelector(".chart");
  if (!spec.data.values.length) {
    box.replaceChildren(el("p", { class: "muted" }, "No finished level yet."));
    return spec;
  }
  // The same description as the PNG/SVG endpoints; only the width follows the page here.
  const room = (box.closest(".figure") || box).clientWidth - 24;
  const shown = { ...spec, width: Math.max(260, room - 90) }; // the plot; axes and titles pad it
  const result = await vegaEmbed(box, shown, {
    renderer: "svg",
    actions: { export: true, source: false, compiled: false, editor: false },
  });
  views.push(result.view);
  return spec;
}

function figureCard(name, title, base, query) {
  const card = el("div", { class: "figure", id: `fig-${name}`, "data-figure": name },
    el("div", { class: "chart" }, el("p", { class: "muted" }, `Loading ${title}…`)));
  const q = query ? `?${query}` : "";
  card.append(el("div", { class: "links" },
    action("PNG", () => download(`${base}/${name}.png${q}`, `${name}.png`), { "data-download": `${name}.png` }),
    " ",
    action("SVG", () => download(`${base}/${name}.svg${q}`, `${name}.svg`), { "data-download": `${name}.svg` })));
  return card;
}

// A level's verdict from the ticket rule (ticket_decision.levels): yes / no / inconclusive, with
// the interval of its accuracy against the dense network (validation, percentage points).
function intervalText(rec) {
  const acc = (rec.comparisons || {}).matches_dense_accuracy;
  return acc && acc.interval && acc.interval[0] !== null && acc.interval[1] !== null
    ? ` [${(100 * acc.interval[0]).toFixed(2)}, ${(100 * acc.interval[1]).toFixed(2)}] pts` : "";
}

function verdictCell(exp, level) {
  if (level === 0) return el("td", { class: "verdict muted" }, "dense (reference)");
  const rec = ((exp.ticket_decision || {}).levels || []).find((r) => r.level === level);
  if (!rec || !rec.verdict) return el("td", { class: "verdict" }, "–");
  return el("td", { class: `verdict verdict-${rec.verdict}`, title: (rec.reasons || []).join("\n") },
    `${rec.verdict}${intervalText(rec)}`);
}

// "Why this level": the ticket decision in words where people look (not only in a tooltip):
// the decision's reason (or "no winning ticket" and why), then each pruned level's verdict,
// its accuracy-minus-dense interval and its first reason (validation data throughout).
// The reason that decided a level's verdict (the first one with that verdict), else the first.
function mainReason(rec) {
  const reasons = rec.reasons || [];
  return reasons.find((x) => x.startsWith(`${rec.verdict}:`)) || reasons[0] || "";
}

function whySection(exp) {
  const decision = exp.ticket_decision || {};
  const names = decision.names || "winning ticket";
  const pruned = (decision.levels || []).filter((r) => r.level > 0);
  const weights = new Map(exp.levels.map((lv) => [lv.level, lv.weights_remaining]));
  const t = exp.ticket;
  const lead = t ? el("p", { "data-role": "why-lead" }, el("strong", {}, `Level ${t.level} (${pct(t.weights_remaining)} of weights): `), decision.reason || "–")
    : pruned.length ? el("p", { "data-role": "why-lead" }, el("strong", {}, `No ${names}: `),
      (decision.reason || "–").replace(new RegExp(`^no ${names}:\\s*`, "i"), ""))
      : el("p", { class: "muted", "data-role": "why-lead" }, "No pruned level has finished yet.");
  return el("div", { class: "card why", id: "why" }, lead,
    pruned.length ? el("ul", {}, pruned.map((r) => el("li", { "data-level": r.level },
      el("span", { class: `verdict-${r.verdict}` }, `level ${r.level} (${pct(weights.get(r.level))}): ${r.verdict || "–"}`),
      `${intervalText(r) ? ` · accuracy − dense${intervalText(r)}` : ""}${mainReason(r) ? ` · ${mainReason(r)}` : ""}`))) : null,
    el("p", { class: "legendnote" }, "Validation data; the interval: accuracy minus the dense network's, 95%."));
}

function levelTable(exp) {
  // The ticket is always a pruned level (never the dense level 0).
  const ticketLevel = exp.ticket && exp.ticket.level > 0 ? exp.ticket.level : null;
  // The run kinds the finished levels report (the ticket, then each control the server
  // returns for some level): a level without one (level 0, one controls_at leaves out) shows –.
  const kinds = ["ticket", ...new Set(exp.levels.flatMap((lv) => Object.keys(lv.controls || {})))];
  // ± std over a level's trials, where the engine reports them (stats[kind][metric].std).
  // Validation accuracy at early stop: the ticket's at the level's top, a control's mean in stats.
  const valOf = (lv, kind) => kind === "ticket" ? lv.early_stop_val_accuracy
    : lv.stats && lv.stats[kind] && lv.stats[kind].early_stop_val_accuracy ? lv.stats[kind].early_stop_val_accuracy.mean : null;
  const std = (lv, kind, key) => {
    const d = lv.stats && lv.stats[kind] && lv.stats[kind][key];
    return d && typeof d.std === "number" && d.n > 1 ? ` ± ${pct(d.std, 2)}` : "";
  };
  const head = el("tr", {}, el("th", { class: "num" }, "level"), el("th", { class: "num" }, "weights"),
    kinds.map((k) => [el("th", { class: "num" }, `${k} early stop`), el("th", { class: "num" }, `${k} val accuracy`), el("th", { class: "num" }, `${k} test accuracy`)]),
    el("th", { title: "matches the dense network and beats the controls, on validation; the interval: accuracy minus dense, 95%" }, "verdict"),
    el("th", {}, "downloads"));
  const rows = exp.levels.map((lv) => {
    const runs = { ticket: lv, ...(lv.controls || {}) };
    const isTicket = lv.level === ticketLevel;
    return el("tr", { class: isTicket ? "ticket" : null, "data-level": lv.level },
      el("td", { class: "num" }, isTicket ? el("span", { class: "star", title: "winning ticket" }, "★ ") : null, lv.level),
      el("td", { class: "num" }, pct(lv.weights_remaining)),
      kinds.map((k) => [
        el("td", { class: "num" }, runs[k] ? num(runs[k].early_stop_iteration) : "–"),
        el("td", { class: "num" }, runs[k] && typeof valOf(lv, k) === "number" ? pct(valOf(lv, k), 2) + std(lv, k, "early_stop_val_accuracy") : "–"),
        el("td", { class: "num" }, runs[k] ? pct(runs[k].early_stop_test_accuracy, 2) + std(lv, k, "early_stop_test_accuracy") : "–"),
      ]),
      verdictCell(exp, lv.level),
      el("td", {},
        action("mask", () => download(`/experiments/${exp.id}/levels/${lv.level}/mask`, `${exp.id}-level${lv.level}-mask.safetensors`), { "data-download": `mask-${lv.level}` }),
        " ",
        action("metrics", () => download(`/experiments/${exp.id}/levels/${lv.level}/metrics`, `${exp.id}-level${lv.level}-metrics.json`), { "data-download": `metrics-${lv.level}` })));
  });
  return el("table", { id: "levels" }, el("thead", {}, head),
    el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: 4 + 3 * kinds.length, class: "muted" }, "No level has finished yet."))));
}

function keyValues(obj) {
  return el("dl", { class: "kv" }, Object.entries(obj).map(([k, v]) =>
    [el("dt", {}, k), el("dd", {}, typeof v === "object" && v !== null ? JSON.stringify(v) : typeof v === "number" ? num(v) : String(v))]));
}

async function experimentPage(id) {
  let exp = await getJson(`/experiments/${id}`);
  const base = `/experiments/${id}/plots`;
  const figures = el("div", { class: "grid", id: "figures" });
  const levelsBox = el("div", { id: "levels-box" });
  const whyBox = el("div", { id: "why-box" });
  const curveLevels = el("div", { class: "levels", id: "curve-levels" });
  const statusBox = el("span", { id: "status" });
  const progressBox = el("div", { id: "progress" });
  const summaryBox = el("div", { id: "summary" });
  const cancel = action("Cancel", async () => {
    if (!confirm(`Cancel experiment ${exp.name}? Finished levels are kept.`)) return;
    exp = await (await api(`/experiments/${id}/cancel`, { method: "POST" })).json();
    update(exp, true);
  }, { id: "cancel", class: "danger" });
  const remove = action("Delete", async () => {
    if (!confirm(`Delete experiment ${exp.name} and all its artifacts? This cannot be undone.`)) return;
    await api(`/experiments/${id}`, { method: "DELETE" });
    location.hash = "#/";
  }, { id: "delete", class: "danger" });
  // While the experiment runs the ticket is not final: the download asks for it as provisional
  // (the file's metadata then says so).
  const ticket = action("Ticket (.safetensors)", () => ACTIVE.has(exp.status)
    ? download(`/experiments/${id}/ticket?provisional=true`, `${id}-ticket-provisional.safetensors`)
    : download(`/experiments/${id}/ticket`, `${id}-ticket.safetensors`), { id: "download-ticket", class: "primary" });
  const csv = action("Levels (CSV)", () => download(`/experiments/${id}/levels.csv`, `${id}-levels.csv`), { id: "download-csv" });
  const json = action("Experiment (JSON)", () => download(`/experiments/${id}`, `${id}.json`), { id: "download-json" });

  let shownLevels = -1;
  let curveChoice = null; // null: the server's default levels
  const curves = trainingCurves(id);

  async function drawFigures() {
    stopViews();
    figures.replaceChildren();
    // Every card first, so each chart is sized to its final column.
    const cards = FIGURES.map(([name, title]) => {
      const query = name === "accuracy_curves" && curveChoice ? `levels=${curveChoice.join(",")}` : "";
      const card = figureCard(name, title, base, query);
      figures.append(card);
      return [name, card, query];
    });
    for (const [name, card, query] of cards) {
      const spec = await embed(card, `${base}/${name}.json${query ? `?${query}` : ""}`);
      if (name === "accuracy_curves") drawCurveChoice(spec);
    }
  }

  function drawCurveChoice(spec) {
    const drawn = new Set(spec.data.values.map((r) => r.level));
    fill(curveLevels, el("span", { class: "muted" }, "Accuracy curves at levels: "),
      exp.levels.map((lv) => {
        const box = el("input", { type: "checkbox", value: lv.level, checked: drawn.has(lv.level) });
        box.addEventListener("change", () => {
          curveChoice = [...curveLevels.querySelectorAll("input:checked")].map((b) => Number(b.value));
          if (!curveChoice.length) curveChoice = null;
          drawFigures().catch(handle);
        });
        return el("label", {}, box, ` ${lv.level} (${pct(lv.weights_remaining)})`);
      }));
  }

  function update(next, force) {
    exp = next;
    fill(statusBox, badge(exp.status), exp.cancel_requested && ACTIVE.has(exp.status) ? el("span", { class: "muted" }, " cancelling…") : null);
    fill(progressBox, progressBar(exp), exp.progress && exp.progress.metrics ? el("div", { class: "muted", style: "font-size:12px; margin-top:4px" },
      `latest evaluation: val loss ${(exp.progress.metrics.val_loss ?? NaN).toFixed(4)}, test accuracy ${pct(exp.progress.metrics.test_accuracy, 2)}`) : null);
    cancel.disabled = !ACTIVE.has(exp.status);
    remove.disabled = ACTIVE.has(exp.status);
    ticket.disabled = !exp.ticket;
    const t = exp.ticket;
    const decision = exp.ticket_decision || {};
    const facts = {
      model: exp.spec.model, dataset: exp.spec.dataset.name, seed: exp.spec.seed,
      [decision.names || "winning ticket"]: t
        ? `level ${t.level}${t.verdict === "inconclusive" ? " (a candidate: inconclusive)" : ""}${ACTIVE.has(exp.status) ? " (so far)" : ""}: ${pct(t.weights_remaining)} of weights, ${pct(t.early_stop_val_accuracy, 2)} validation / ${pct(t.early_stop_test_accuracy, 2)} test accuracy at iteration ${num(t.early_stop_iteration)}`
        : (decision.levels || []).length > 1 ? `no ${decision.names || "winning ticket"}` : "–",
      why: decision.reason || "–",
      created: when(exp.created_at), started: when(exp.started_at), finished: when(exp.finished_at),
      owner: exp.owner || "–", attempts: exp.attempts,
    };
    fill(summaryBox, keyValues(facts),
      exp.cost ? [el("h2", {}, "Cost"), el("div", { id: "cost" }, keyValues(costFacts(exp.cost)))] : null,
      exp.error ? el("div", { class: "error", style: "margin-top:10px" }, `${exp.error.type}: ${exp.error.message}`) : null);
    whyBox.replaceChildren(whySection(exp));
    curves.live(exp);
    if (force || exp.levels.length !== shownLevels) {
      shownLevels = exp.levels.length;
      levelsBox.replaceChildren(levelTable(exp));
      drawFigures().catch(handle);
      curves.finished(exp).catch(handle);
    }
  }

  fill($("#main"), 
    el("div", { class: "headline" }, el("h1", { id: "exp-name" }, exp.name), statusBox,
      el("span", { class: "muted" }, exp.id), tagChips(exp.spec.tags, (t) => (location.hash = `#/?tag=${encodeURIComponent(t)}`))),
    el("div", { class: "error-slot" }),
    el("div", { class: "toolbar" }, ticket, csv, json, el("span", { class: "spacer" }), cancel, remove),
    el("div", { class: "card" }, progressBox, el("div", { style: "margin-top:12px" }, summaryBox)),
    el("h2", {}, "Levels"), levelsBox,
    el("h2", {}, "Why this level"), whyBox,
    el("h2", {}, "Figures"), curveLevels, figures,
    el("h2", {}, "Validation and loss curves"), curves.box,
    el("h2", {}, "Spec (defaults filled in)"), el("pre", { class: "spec", id: "spec" }, JSON.stringify(exp.spec, null, 2)));
  update(exp, true);

  // Polling (conditional GETs: 304 while nothing changed), where the stream cannot be had.
  async function tick() {
    const next = await getJson(`/experiments/${id}`);
    update(next, false);
    if (ACTIVE.has(next.status)) poll(tick, 1000);
  }

  // Live: each event of the stream schedules one re-read (at most one every 300 ms).
  const mine = generation;
  let pending = null;
  const refresh = async () => {
    pending = null;
    if (generation !== mine) return;
    update(await getJson(`/experiments/${id}`), false);
  };
  const onEvent = () => {
    if (!pending) pending = setTimeout(() => refresh().catch(handle), 300);
  };
  async function live() {
    for (let failures = 0; failures < 3; ) {
      const outcome = await follow(id, onEvent);
      if (generation !== mine) return;
      if (outcome === "end") return refresh();
      if (outcome === "failed") failures += 1; // "closed": the server's time limit, reconnect
    }
    if (generation === mine) poll(tick, 1000);
  }
  if (ACTIVE.has(exp.status)) live().catch(handle);
}

// ------------------------------------------------------------------ cost and curves in words

const plural = (n, word) => `${num(n)} ${word}${n === 1 ? "" : "s"}`;

// "about 3 min": an estimate is not a clock (cli/render.py and the API's notes say it alike).
function about(seconds) {
  if (typeof seconds !== "number" || !isFinite(seconds)) return "–";
  if (seconds < 90) return `about ${Math.max(1, Math.round(seconds))} s`;
  const minutes = Math.round(seconds / 60);
  return minutes < 90 ? `about ${minutes} min` : `about ${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

// The experiment's cost as sentences: what was trained, and what is left with its basis.
function costFacts(cost) {
  const facts = {
    "so far": `${plural(cost.iterations || 0, "iteration")}, ${duration(cost.seconds || 0)} of training over ${plural(cost.levels || 0, "level")}`,
  };
  const rest = cost.remaining_estimate;
  if (rest && rest.runs) {
    facts["still to go"] = `${about(rest.seconds)}, ${plural(rest.runs, "run")}, ${plural(rest.iterations, "iteration")}`;
    if (rest.basis) facts.estimate = rest.basis;
  }
  return facts;
}

// Validation loss, validation accuracy and train loss along training: every finished level's
// ticket run (GET .../levels/L/metrics), and a live curve of the level training now, built from
// the evaluations the experiment's progress carries as they arrive (stream or poll).
function trainingCurves(id) {
  const box = el("div", { class: "grid", id: "training-curves" });
  const liveBox = el("div", { class: "card", id: "live-curve" });
  const finishedBox = el("div", { class: "card", id: "finished-curves" });
  box.append(finishedBox, liveBox);
  let points = [];
  let running = null; // "level/kind" of the live curve
  let liveView = null;
  const metricNames = { val_loss: "validation loss", val_accuracy: "validation accuracy", train_loss: "train loss" };

  function chart(values, color, title) {
    return {
      $schema: "https://vega.github.io/schema/vega-lite/v5.json",
      title,
      data: { values },
      repeat: { column: Object.keys(metricNames) },
      spec: {
        width: 240, height: 160,
        mark: { type: "line", point: values.length < 60 },
        encoding: {
          x: { field: "iteration", type: "quantitative" },
          y: { field: { repeat: "column" }, type: "quantitative", scale: { zero: false } },
          color: { field: color, type: "nominal", title: null },
          tooltip: [{ field: color }, { field: "iteration" }, { field: "val_loss", format: ".4f" },
            { field: "val_accuracy", format: ".4f" }, { field: "train_loss", format: ".4f" }],
        },
      },
    };
  }

  async function draw(target, spec) {
    const result = await vegaEmbed(target, spec, { actions: false, renderer: "svg" });
    views.push(result.view);
    return result.view;
  }

  return {
    box,
    async finished(exp) {
      const levels = exp.levels.map((lv) => lv.level);
      if (!levels.length) {
        fill(finishedBox, el("p", { class: "muted" }, "No level has finished yet."));
        return;
      }
      const values = [];
      for (const level of levels) {
        const body = await getJson(`/experiments/${id}/levels/${level}/metrics`);
        const ticket = body.runs.ticket;
        for (const p of (ticket && ticket.curve) || []) values.push({ ...p, level: `level ${level}` });
      }
      finishedBox.replaceChildren();
      await draw(finishedBox, chart(values, "level", "Ticket runs of the finished levels"));
      finishedBox.setAttribute("data-points", String(values.length));
    },
    live(exp) {
      const p = exp.progress || {};
      if (!ACTIVE.has(exp.status) || typeof p.level !== "number") {
        liveBox.hidden = true;
        return;
      }
      liveBox.hidden = false;
      const key = `${p.level}/${p.kind}`;
      if (key !== running) {
        running = key;
        points = [];
      }
      const m = p.metrics;
      const at = m && typeof m.iteration === "number" ? m.iteration : p.iteration;
      if (m && typeof at === "number" && !points.some((q) => q.iteration === at)) {
        const row = { iteration: at, run: `level ${p.level} ${p.kind}` };
        for (const name of Object.keys(metricNames)) if (typeof m[name] === "number") row[name] = m[name];
        points.push(row);
      }
      liveBox.setAttribute("data-points", String(points.length));
      if (!points.length) {
        fill(liveBox, el("p", { class: "muted" }, `Level ${p.level} (${p.kind}) is training; its curve starts at its first evaluation.`));
        return;
      }
      if (liveView) liveView.finalize();
      liveBox.replaceChildren();
      draw(liveBox, chart(points, "run", `Level ${p.level} training now (${p.kind}), live`))
        .then((v) => { liveView = v; })
        .catch(handle);
    },
  };
}

function stopViews() {
  views.forEach((v) => v.finalize());
  views = [];
}

// ------------------------------------------------------------------ compare

// Each compared experiment's own ticket, so members that disagree (one seed's 41% ticket, the
// other's none) are seen, not averaged into a band.
function memberTickets(members) {
  const head = el("tr", {}, ["experiment", "seed", "ticket level", "weights", "val accuracy", "test accuracy", "early stop", "verdict"]
    .map((h, i) => el("th", { class: i > 1 && i < 7 ? "num" : null }, h)));
  return [el("h3", {}, "Each member's ticket"),
    el("table", { id: "compare-members" }, el("thead", {}, head), el("tbody", {}, members.map((m) => {
      const t = m.ticket;
      const who = [el("td", {}, el("a", { href: `#/experiments/${m.id}` }, m.name), " ", el("span", { class: "muted mono" }, m.id.slice(0, 8))),
        el("td", { class: "muted" }, m.seed ?? "–")];
      return el("tr", { "data-id": m.id }, who, t ? [
        el("td", { class: "num" }, t.level), el("td", { class: "num" }, pct(t.weights_remaining)),
        el("td", { class: "num" }, pct(t.early_stop_val_accuracy, 2)), el("td", { class: "num" }, pct(t.early_stop_test_accuracy, 2)),
        el("td", { class: "num" }, num(t.early_stop_iteration)), el("td", { class: `verdict-${t.verdict}` }, t.verdict || "–"),
      ] : el("td", { colspan: 6, class: "muted", style: "text-align:left", "data-role": "no-ticket" }, m.no_ticket || "no winning ticket"));
    })))];
}

async function comparePage(params) {
  const ids = params.get("ids");
  const tag = params.get("tag");
  const list = await getJson("/experiments?limit=100");
  const chosen = new Set(ids ? ids.split(",") : []);
  const picker = el("table", { class: "pick", id: "compare-pick" }, el("tbody", {},
    list.items.map((exp) => el("tr", {},
      el("td", {}, el("input", { type: "checkbox", value: exp.id, checked: chosen.has(exp.id), "aria-label": `compare ${exp.name}` })),
      el("td", {}, exp.name), el("td", { class: "muted mono", "data-role": "short-id", title: exp.id }, exp.id.slice(0, 8)),
      el("td", {}, badge(exp.status)), el("td", { class: "muted" }, `seed ${exp.spec.seed}`),
      el("td", { class: "muted", "data-role": "created" }, when(exp.created_at)),
      el("td", {}, tagChips(exp.spec.tags, (t) => (location.hash = `#/compare?tag=${encodeURIComponent(t)}`)))))));
  const go = el("button", { class: "primary", id: "compare-go" }, "Compare");
  go.addEventListener("click", () => {
    const picked = [...picker.querySelectorAll("input:checked")].map((b) => b.value);
    if (picked.length) location.hash = `#/compare?ids=${picked.join(",")}`;
  });
  const tagInput = el("input", { type: "text", id: "compare-tag", placeholder: "or a tag", value: tag || "" });
  tagInput.addEventListener("change", () => (location.hash = `#/compare?tag=${encodeURIComponent(tagInput.value.trim())}`));
  const result = el("div", { id: "compare-result" });
  fill($("#main"), 
    el("div", { class: "headline" }, el("h1", {}, "Compare experiments"),
      el("span", { class: "muted" }, "repeats that differ only in the seed are drawn as mean ± std")),
    el("div", { class: "error-slot" }),
    el("div", { class: "card" }, picker, el("div", { class: "toolbar", style: "margin:10px 0 0" }, go, tagInput)),
    result);
  if (!ids && !tag) return;
  const query = ids ? `ids=${ids}` : `tag=${encodeURIComponent(tag)}`;
  const groups = await getJson(`/compare?${query}`);
  const names = new Map(groups.experiments.map((e) => [e.id, `${e.name} ${e.id.slice(0, 8)} (seed ${e.seed})`]));
  result.append(el("div", { class: "card" },
    el("h2", { style: "margin-top:0" }, "Groups"),
    el("p", { class: "legendnote" }, groups.differences.length ? `Spec fields that differ: ${groups.differences.join(", ")}` : "The specs differ only in seed, name or tags."),
    el("table", { id: "compare-groups" }, el("tbody", {}, groups.groups.map((g) => el("tr", {},
      el("td", {}, g.label), el("td", { class: "muted" }, g.experiment_ids.map((i) => names.get(i)).join(", ")))))),
    memberTickets(groups.experiments)));
  const grid = el("div", { class: "grid", id: "figures" });
  result.append(grid);
  const cards = FIGURES.map(([name, title]) => [name, grid.appendChild(figureCard(name, title, "/compare/plots", query))]);
  for (const [name, card] of cards) await embed(card, `/compare/plots/${name}.json?${query}`);
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", route);
