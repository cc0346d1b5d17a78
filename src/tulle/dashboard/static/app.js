// Tulle dashboard: polls /api/summary once a second; streams /api/tap on demand.
// No framework, no CDN: the page must work offline, from the package alone.
"use strict";

const fmtPct = (v) => (v === null || v === undefined ? "-" : (v * 100).toFixed(2) + "%");
const fmtRps = (v) => (v === null || v === undefined ? "-" : v.toFixed(1));
const fmtMs = (v) => (v === null || v === undefined ? "-" : v >= 10 ? v.toFixed(0) + "ms" : v.toFixed(1) + "ms");
const rateClass = (v) => (v === null || v === undefined ? "" : v >= 0.99 ? "good" : v >= 0.95 ? "warn" : "bad");

function cell(text, cls, attrs) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  for (const [k, v] of Object.entries(attrs || {})) td.setAttribute(k, v);
  return td;
}

function sparkline(values) {
  const w = 100, h = 22;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("width", w);
  svg.setAttribute("height", h);
  const points = values.filter((v) => v !== null && v !== undefined);
  if (points.length > 1) {
    const lo = Math.min(...points), hi = Math.max(...points);
    const span = hi - lo;
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", points.map((v, i) =>
      `${(i / (points.length - 1)) * (w - 2) + 1},${span ? h - 2 - ((v - lo) / span) * (h - 4) : h / 2}`).join(" "));
    svg.appendChild(line);
  }
  const td = document.createElement("td");
  td.appendChild(svg);
  return td;
}

function renderServices(summary) {
  const body = document.querySelector("#services tbody");
  body.replaceChildren();
  for (const s of summary.services) {
    const tr = document.createElement("tr");
    tr.dataset.service = s.service;
    tr.dataset.direction = s.direction;
    const name = s.namespace && s.namespace !== "default" ? `${s.service}.${s.namespace}` : s.service;
    tr.append(
      cell(name, "text"), cell(s.direction, "text"),
      cell(fmtPct(s.successRate), rateClass(s.successRate), { "data-field": "success" }),
      cell(fmtRps(s.rps), "", { "data-field": "rps" }),
      cell(fmtMs(s.p50), "", { "data-field": "p50" }),
      cell(fmtMs(s.p95), "", { "data-field": "p95" }),
      cell(fmtMs(s.p99), "", { "data-field": "p99" }),
      cell(String(Math.round(s.responsesTotal)), "", { "data-field": "total" }),
      sparkline(s.history.map((p) => p.successRate)),
      sparkline(s.history.map((p) => p.rps)),
      sparkline(s.history.map((p) => p.p99)),
    );
    body.appendChild(tr);
  }
  document.querySelector("#window").textContent =
    `(last ${Math.round(summary.windowSeconds || 0)}s, proxies: ${summary.admins.join(", ")})`;
  document.querySelector("#errors").textContent = (summary.errors || []).join("; ");
}

function renderEndpoints(summary) {
  const body = document.querySelector("#endpoints tbody");
  body.replaceChildren();
  for (const e of summary.endpoints) {
    const tr = document.createElement("tr");
    tr.dataset.endpoint = e.address;
    const sig = e.signals || {};
    const state = String(e.state ?? "unknown");
    tr.append(
      cell(`${e.service} (${e.direction})`, "text"), cell(e.address, "text"),
      cell(state, state === "active" ? "state-active text" : "state-other text", { "data-field": "state" }),
      cell(String(e.inFlight ?? "-"), "", { "data-field": "inflight" }),
      cell(fmtPct(sig.successRate), rateClass(sig.successRate)),
      cell(fmtRps(sig.rps)), cell(fmtMs(sig.p99)), cell(e.admin, "text muted"),
    );
    body.appendChild(tr);
  }
}

async function poll() {
  const status = document.querySelector("#status");
  try {
    const response = await fetch("/api/summary", { cache: "no-store" });
    const summary = await response.json();
    renderServices(summary);
    renderEndpoints(summary);
    status.textContent = "updated " + new Date(summary.at * 1000).toLocaleTimeString();
    status.dataset.updates = String(Number(status.dataset.updates || 0) + 1);
  } catch (err) {
    status.textContent = "dashboard unreachable: " + err;
  }
}

let tapAbort = null;
const TAP_ROWS = 100;

async function startTap(event) {
  event.preventDefault();
  stopTap();
  const form = new FormData(document.querySelector("#tap-form"));
  const params = new URLSearchParams();
  for (const [k, v] of form.entries()) if (v) params.set(k, v);
  tapAbort = new AbortController();
  document.querySelector("#tap-start").disabled = true;
  document.querySelector("#tap-stop").disabled = false;
  const note = document.querySelector("#tap-note");
  note.textContent = "tapping…";
  const body = document.querySelector("#tap tbody");
  try {
    const response = await fetch("/api/tap?" + params, { signal: tapAbort.signal });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let pending = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      pending += decoder.decode(value, { stream: true });
      const lines = pending.split("\n");
      pending = lines.pop();
      for (const line of lines) {
        if (!line.trim()) continue;
        const e = JSON.parse(line);
        if (e.error) { note.textContent = e.error; continue; }
        const tr = document.createElement("tr");
        tr.append(
          cell(new Date(e.at * 1000).toLocaleTimeString(), "text"), cell(e.method, "text"),
          cell(e.authority, "text"), cell(e.path, "text"),
          cell(String(e.status), e.status >= 500 || e.error ? "bad" : ""),
          cell(fmtMs(e.latency_ms)), cell(e.endpoint || "-", "text"),
        );
        body.prepend(tr);
        while (body.children.length > TAP_ROWS) body.lastChild.remove();
      }
    }
  } catch (err) {
    if (err.name !== "AbortError") note.textContent = "tap ended: " + err;
  }
  document.querySelector("#tap-start").disabled = false;
  document.querySelector("#tap-stop").disabled = true;
}

function stopTap() {
  if (tapAbort) tapAbort.abort();
  tapAbort = null;
  document.querySelector("#tap-note").textContent = "";
}

document.querySelector("#tap-form").addEventListener("submit", startTap);
document.querySelector("#tap-stop").addEventListener("click", stopTap);
poll();
setInterval(poll, 1000);
