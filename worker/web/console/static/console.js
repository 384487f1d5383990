// The vidgo-stems console: draws each page from the console's JSON reads. Plain script, no
// build step; every value from the ledger goes into the page as text, never as markup.
"use strict";

const state = { session: null, stream: null, timer: null };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "style") Object.assign(node.style, value); // CSSOM: allowed by the CSP
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function get(path) {
  const response = await fetch(path, { credentials: "same-origin" });
  if (response.status === 401) { location.assign("/console/login"); throw new Error("signed out"); }
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
  return body;
}

async function post(path, payload) {
  const response = await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": state.session.csrf },
    body: JSON.stringify(payload),
  });
  const body = response.status === 204 ? {} : await response.json();
  if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
  return body;
}

const fmt = {
  n: (v) => (v === null || v === undefined ? "–" : Number(v).toLocaleString("en")),
  s: (v) => (v === null || v === undefined ? "–" : v < 90 ? `${Math.round(v)} s`
    : v < 5400 ? `${Math.round(v / 60)} min` : `${(v / 3600).toFixed(1)} h`),
  t: (v) => (v ? new Date(v * 1000).toISOString().replace("T", " ").slice(0, 19) + "Z" : "–"),
  db: (v) => (v === null || v === undefined ? "–" : Number(v).toFixed(1)),
};

function card(label, value, id) {
  return el("div", { class: "card", id }, el("div", { class: "n" }, value), el("div", { class: "l" }, label));
}

function table(headers, rows) {
  return el("table", {},
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { class: h.num ? "num" : null }, h.label || h)))),
    el("tbody", {}, rows));
}

function rest(entry, known) {
  return Object.fromEntries(Object.entries(entry).filter(([key]) => !known.includes(key)));
}

function show(...nodes) {
  const main = document.getElementById("main");
  main.replaceChildren(...nodes.flat().filter((node) => node !== null && node !== undefined));
}

function fail(error) {
  show(el("p", { class: "error", role: "alert" }, String(error.message || error)));
}

// ---- Overview ---------------------------------------------------------------------------

function renderOverview(o) {
  const jobs = Object.entries(o.jobs).map(([s, n]) =>
    el("tr", { "data-state": s }, el("td", {}, s), el("td", { class: "num" }, fmt.n(n))));
  const stages = Object.entries(o.stages).map(([s, n]) =>
    el("tr", { "data-stage": s }, el("td", {}, s), el("td", { class: "num" }, fmt.n(n))));
  const peak = Math.max(1, ...o.history);
  const spark = el("div", { class: "spark", title: "jobs ended per minute, last 30 minutes" },
    o.history.map((n) => el("div", { style: { height: `${Math.round((n / peak) * 100)}%` }, title: `${n}` })));
  const bucket = (k) => o.buckets[k] ? `${o.buckets[k].tokens.toFixed(0)}/${o.buckets[k].burst.toFixed(0)} at ${o.buckets[k].rate_per_s}/s` : "–";
  const workers = o.heartbeats.map((w) =>
    el("tr", { class: w.age_s > 30 ? "muted" : null }, el("td", {}, w.name), el("td", { class: "num" }, fmt.s(w.age_s) + " ago")));
  show(
    el("h1", {}, "Overview"),
    el("p", { class: "muted", id: "updated" }, `Updated ${fmt.t(o.at)} (live)`),
    el("div", { class: "cards" },
      card("jobs in the ledger", fmt.n(o.total), "jobs-total"),
      card("ended in the last minute", fmt.n(o.finished_last_min), "throughput"),
      card("polls pending", fmt.n(o.polls_pending)),
      card(`polls overdue (oldest ${fmt.s(o.oldest_overdue_s)})`, fmt.n(o.polls_overdue)),
      card("Vidgo slots in use of the cap", `${fmt.n(o.in_flight)} / ${fmt.n(o.in_flight_cap)}`),
      card("submit budget (tokens)", bucket("submit")),
      card("query budget (tokens)", bucket("query")),
      card("credit balance" + (o.credits_balance_age_s !== null ? ` (${fmt.s(o.credits_balance_age_s)} old)` : ""), fmt.n(o.credits_balance)),
      card("rate-limit cool-down" + (o.cooldown_reason ? `: ${o.cooldown_reason}` : ""), o.cooldown_s ? fmt.s(o.cooldown_s) : "none"),
      card("submits paused" + (o.submits_paused_reason ? `: ${o.submits_paused_reason}` : ""), o.submits_paused_s ? fmt.s(o.submits_paused_s) : "no"),
    ),
    el("h2", {}, "Throughput: jobs ended per minute (last 30 min)"), spark,
    el("div", { class: "cards", style: { marginTop: "1em" } },
      el("div", {}, el("h2", {}, "Jobs by state"), table(["state", { label: "jobs", num: true }], jobs)),
      el("div", {}, el("h2", {}, "Jobs by stage"), table(["stage", { label: "jobs", num: true }], stages)),
      el("div", {}, el("h2", {}, `Workers (${o.workers.length} seen)`),
        table(["worker", { label: "last heartbeat", num: true }], workers))),
  );
}

function overviewPage() {
  get("/console/api/overview").then(renderOverview, fail);
  const stream = new EventSource("/console/api/events");
  stream.addEventListener("overview", (event) => renderOverview(JSON.parse(event.data)));
  state.stream = stream;
}

// ---- Batches ----------------------------------------------------------------------------

function batchRow(b) {
  const share = b.jobs ? Math.round((b.ended / b.jobs) * 100) : 0;
  const file = (which, label, present) => present
    ? el("a", { href: `/console/api/batches/${encodeURIComponent(b.batch_id)}/${which}` }, label)
    : el("span", { class: "muted" }, label);
  return el("tr", { "data-batch": b.batch_id },
    el("td", {}, el("div", {}, b.batch_id), el("div", { class: "muted" }, `${b.catalog} · ${b.status}`)),
    el("td", {}, el("div", { class: "bar" }, el("div", { style: { width: `${share}%` } })), `${fmt.n(b.ended)} / ${fmt.n(b.jobs)} ended`),
    el("td", { class: "num" }, `${b.rate_per_min}/min`),
    el("td", { class: "num" }, b.eta_s === null ? "–" : fmt.s(b.eta_s)),
    el("td", { class: "num" }, el("a", { href: `/console/failures?batch=${encodeURIComponent(b.batch_id)}`, class: b.failed ? "bad" : null }, fmt.n(b.failed))),
    el("td", { class: "num" }, `${fmt.n(b.credits_spent)} / ~${fmt.n(b.credits_to_go)}`),
    el("td", {}, file("manifest", "manifest", b.has_manifest), " · ", file("report", "failure report", b.has_report)),
  );
}

function batchesPage() {
  const load = () => get("/console/api/batches").then((data) => show(
    el("h1", {}, "Batches"),
    data.batches.length ? table(["batch", "progress", { label: "rate", num: true }, { label: "ETA", num: true },
      { label: "failures", num: true }, { label: "credits spent / to go", num: true }, "files"], data.batches.map(batchRow))
      : el("p", { class: "muted" }, "No batches yet: run `vidgo-stems batch CATALOG`."),
  ), fail);
  load();
  state.timer = setInterval(load, 3000);
}

// ---- Failures ---------------------------------------------------------------------------

function scopeFromLocation() {
  const params = new URLSearchParams(location.search);
  return { batch: params.get("batch") || "", since: params.get("since") || "" };
}

function failuresPage() {
  const scope = scopeFromLocation();
  const query = new URLSearchParams(Object.entries(scope).filter(([, v]) => v)).toString();
  get(`/console/api/failures?${query}`).then((data) => {
    const form = el("form", { class: "filters", method: "get", action: "/console/failures" },
      el("label", {}, "Batch", el("input", { name: "batch", value: scope.batch, placeholder: "all batches" })),
      el("label", {}, "Created since", el("select", { name: "since" },
        ["", "1h", "24h", "7d"].map((v) => el("option", { value: v ? sinceOf(v) : "", selected: false }, v ? `last ${v}` : "any time")))),
      el("button", { type: "submit" }, "Show"));
    const rows = data.groups.map((g) => el("tr", { "data-code": g.code },
      el("td", {}, el("code", {}, g.code)),
      el("td", { class: "num" }, fmt.n(g.count)),
      el("td", {}, g.message),
      el("td", {}, g.examples.map((j) => el("div", {}, el("a", { href: `/console/jobs/${encodeURIComponent(j)}` }, j)))),
      el("td", {}, actionButton("Retry…", { action: "retry", codes: [g.code], ...scope }),
        " ", el("a", { href: `/console/jobs?code=${encodeURIComponent(g.code)}${scope.batch ? `&batch=${encodeURIComponent(scope.batch)}` : ""}` }, "list"))));
    show(
      el("h1", {}, "Failures"),
      form,
      el("p", { id: "failure-scope" }, `Scope: ${data.scope} · `, el("strong", {}, `${fmt.n(data.total)} failed or cancelled`)),
      data.groups.length ? table(["error code", { label: "jobs", num: true }, "message", "examples", ""], rows)
        : el("p", { class: "muted" }, "No failures in this scope."),
      data.groups.length ? el("p", {}, actionButton("Retry every failure in this scope…", { action: "retry", ...scope })) : null,
    );
  }, fail);
}

function sinceOf(window) {
  const seconds = { "1h": 3600, "24h": 86400, "7d": 604800 }[window];
  return String(Math.floor(Date.now() / 1000) - seconds);
}

// ---- Actions: preview, then confirm ------------------------------------------------------

function actionButton(label, selection) {
  const readonly = state.session && state.session.kind !== "operator";
  return el("button", {
    type: "button", class: "action", disabled: readonly,
    title: readonly ? "a read-only key may look, not act" : null,
    onclick: () => openPreview(selection),
  }, label);
}

async function openPreview(selection) {
  const dialog = document.getElementById("preview");
  const confirmButton = document.getElementById("confirm");
  const result = document.getElementById("preview-result");
  result.textContent = "";
  let plan;
  try {
    plan = await post("/console/api/preview", selection);
  } catch (error) {
    result.textContent = String(error.message);
    result.className = "error";
    confirmButton.disabled = true;
    dialog.showModal();
    return;
  }
  document.getElementById("preview-title").textContent = plan.action === "retry" ? "Retry jobs" : "Cancel jobs";
  document.getElementById("preview-scope").textContent = `Scope: ${plan.scope}`;
  document.getElementById("preview-summary").textContent = plan.action === "retry"
    ? `${plan.jobs} job(s); ${plan.may_pay} may submit again: up to ${plan.credits} credits`
    : `${plan.jobs} job(s) to cancel; ${plan.may_pay} already billed at Vidgo (no refund)`;
  document.getElementById("preview-lines").textContent = plan.lines.join("\n") + (plan.jobs > plan.lines.length ? `\n… and ${plan.jobs - plan.lines.length} more` : "");
  confirmButton.disabled = plan.jobs === 0;
  confirmButton.onclick = async () => {
    confirmButton.disabled = true;
    try {
      const done = await post("/console/api/confirm", { plan_id: plan.plan_id });
      const verb = done.action === "retry" ? "retried" : "cancelled";
      result.className = "ok";
      result.textContent = `${done.done} job(s) ${verb}; ${done.may_pay} may pay; ${done.refused.length} refused` +
        (done.refused.length ? `: ${done.refused.join("; ")}` : "");
    } catch (error) {
      result.className = "error";
      result.textContent = String(error.message);
    }
  };
  dialog.showModal();
}

// ---- Jobs -------------------------------------------------------------------------------

const STATES = ["", "QUEUED", "SUBMITTING", "SUBMITTED", "RUNNING", "DOWNLOADING", "POSTPROCESSING", "DONE", "FAILED", "CANCELLED"];

function jobsPage() {
  const params = new URLSearchParams(location.search);
  const field = (name, label, attrs) => el("label", {}, label, el("input", { name, value: params.get(name) || "", ...attrs }));
  const form = el("form", { class: "filters", method: "get", action: "/console/jobs" },
    el("label", {}, "State", el("select", { name: "state" }, STATES.map((s) => el("option", { value: s, selected: params.get("state") === s }, s || "any")))),
    field("batch", "Batch"), field("code", "Error code"), field("since", "Created since", { placeholder: "Unix time or ISO" }),
    field("job_id", "Job id"), field("title", "Title contains"),
    el("button", { type: "submit" }, "Search"));
  get(`/console/api/jobs?${params.toString()}`).then((data) => {
    const rows = data.jobs.map((j) => el("tr", { "data-job": j.job_id },
      el("td", {}, el("a", { href: `/console/jobs/${encodeURIComponent(j.job_id)}` }, j.job_id)),
      el("td", {}, j.title || ""), el("td", {}, j.state), el("td", {}, j.error_code || ""),
      el("td", {}, fmt.t(j.created_at))));
    const next = new URLSearchParams(params);
    if (data.next_cursor) next.set("cursor", data.next_cursor);
    show(el("h1", {}, "Jobs"), form,
      table(["job", "title", "state", "error", "created"], rows),
      el("p", { class: "muted" }, `${data.jobs.length} shown, ${data.scanned} read. `,
        data.next_cursor ? el("a", { href: `/console/jobs?${next.toString()}`, id: "next-page" }, "Next page →") : "End of the list."),
      params.get("batch") ? el("p", {}, actionButton("Cancel the active jobs of this batch…", { action: "cancel", batch: params.get("batch") })) : null);
  }, fail);
}

function jobPage(jobId) {
  get(`/console/api/jobs/${encodeURIComponent(jobId)}`).then((job) => {
    const history = job.history.map((h) => el("tr", {},
      el("td", {}, fmt.t(h.at)), el("td", {}, h.event || ""), el("td", {}, `${h.from || ""} → ${h.to || ""}`),
      el("td", {}, el("code", {}, JSON.stringify(rest(h, ["at", "event", "from", "to"]))))));
    const subs = job.subscriptions.map((s) => el("tr", {},
      el("td", {}, s.subscription_id),
      el("td", {}, s.webhook ? `${s.webhook.url} (${s.webhook.status})` : "no webhook"),
      el("td", {}, s.webhook ? s.webhook.attempts.map((a) => el("div", {}, el("code", {}, JSON.stringify(a)))) : "")));
    show(
      el("h1", {}, `Job ${job.job_id}`),
      el("p", {}, el("strong", { id: "job-state" }, job.state), ` · stage ${job.stage} · ${job.request.title || "untitled"}`),
      job.error ? el("p", { class: "bad" }, `[${job.error.code}] ${job.error.message}`) : null,
      el("p", {}, actionButton("Retry…", { action: "retry", job_ids: [job.job_id] }), " ",
        actionButton("Cancel…", { action: "cancel", job_ids: [job.job_id] })),
      el("div", { class: "cards" },
        card("submit attempts", job.submit_attempts), card("polls", job.polls),
        card("retries", job.retries), card("resubmits", job.resubmits),
        card("Vidgo tasks", job.vidgo_task_ids.join(", ") || "none"),
        card("created", fmt.t(job.created_at))),
      el("h2", {}, "Stems"),
      Object.keys(job.stems).length ? Object.entries(job.stems).map(([name, stem]) => stemBlock(job.job_id, name, stem))
        : el("p", { class: "muted" }, "No stems yet."),
      el("h2", {}, "History"), table(["at", "event", "move", "detail"], history),
      el("h2", {}, "Subscriptions and webhooks"),
      subs.length ? table(["subscription", "webhook", "deliveries"], subs) : el("p", { class: "muted" }, "None."),
      el("h2", {}, "Manifest"),
      job.manifest ? el("pre", {}, JSON.stringify(job.manifest, null, 2)) : el("p", { class: "muted" }, "No manifest yet."),
      el("h2", {}, "Request"), el("pre", {}, JSON.stringify(job.request, null, 2)),
    );
  }, fail);
}

function stemBlock(jobId, name, stem) {
  const f = stem.figures || {};
  const canvas = el("canvas", { class: "waveform", "data-stem": name, width: 1000, height: 72 });
  const audio = stem.url ? el("audio", { controls: true, preload: "metadata", src: stem.url, "data-stem": name }) : el("p", { class: "muted" }, "no link right now");
  const block = el("div", { class: "stem" },
    el("strong", {}, name), " ",
    el("span", { class: "muted" }, `loudness ${fmt.db(f.loudness_lufs)} LUFS · true peak ${fmt.db(f.true_peak_dbtp)} dBTP · offset ${f.offset_vs_source_s ?? "–"} s · ${fmt.n(stem.bytes)} bytes`),
    stem.problems && stem.problems.length ? el("div", { class: "bad" }, `problems: ${stem.problems.join(", ")}`) : el("div", { class: "ok" }, "no problems"),
    canvas, audio);
  if (stem.has_peaks) {
    get(`/console/api/jobs/${encodeURIComponent(jobId)}/peaks/${encodeURIComponent(name)}`)
      .then((w) => drawWaveform(canvas, w), (error) => canvas.replaceWith(el("p", { class: "error" }, String(error.message))));
  }
  return block;
}

function drawWaveform(canvas, wave) {
  const ctx = canvas.getContext("2d");
  const { width, height } = canvas;
  const full = wave.bits === 16 ? 32768 : 128;
  ctx.clearRect(0, 0, width, height);
  ctx.fillStyle = "#2f5bd3";
  const per = wave.pairs.length / width;
  for (let x = 0; x < width; x += 1) {
    const from = Math.floor(x * per);
    const to = Math.max(from + 1, Math.floor((x + 1) * per));
    let low = 0, high = 0;
    for (let i = from; i < to && i < wave.pairs.length; i += 1) {
      low = Math.min(low, wave.pairs[i][0]);
      high = Math.max(high, wave.pairs[i][1]);
    }
    const top = height / 2 - (high / full) * (height / 2);
    const bottom = height / 2 - (low / full) * (height / 2);
    ctx.fillRect(x, top, 1, Math.max(1, bottom - top));
  }
  canvas.dataset.drawn = String(wave.pairs.length);
}

// ---- Start ------------------------------------------------------------------------------

async function start() {
  state.session = await get("/console/api/session");
  document.getElementById("who").textContent = `${state.session.who} (${state.session.kind})`;
  document.getElementById("logout").addEventListener("click", async () => {
    await post("/console/logout", {});
    location.assign("/console/login");
  });
  document.getElementById("close").addEventListener("click", () => {
    document.getElementById("preview").close();
    route();
  });
  route();
}

function route() {
  if (state.stream) { state.stream.close(); state.stream = null; }
  if (state.timer) { clearInterval(state.timer); state.timer = null; }
  const parts = location.pathname.replace(/\/+$/, "").split("/").slice(2);
  const page = parts[0] || "overview";
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("here", link.dataset.nav === page);
  }
  document.body.dataset.page = page;
  if (page === "jobs" && parts[1]) return jobPage(decodeURIComponent(parts[1]));
  const pages = { overview: overviewPage, batches: batchesPage, failures: failuresPage, jobs: jobsPage };
  (pages[page] || overviewPage)();
}

document.addEventListener("DOMContentLoaded", () => { start().catch(fail); });
