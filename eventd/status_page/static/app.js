// The status page: polls /status.json and redraws. Plain JavaScript and SVG; no libraries.
// Each chart keeps the last HISTORY points it received; it carries data-points (how many),
// data-last (the newest value) and data-version (redraw count) so tests and tools can read it.
"use strict";

const HISTORY = 120;
const SVG_NS = "http://www.w3.org/2000/svg";
const WIDTH = 300, HEIGHT = 60;
const history = new Map();   // role name -> {rate: [], lag: []}

function refreshMs() {
  const asked = Number(new URLSearchParams(location.search).get("refresh"));
  const base = asked || Number(document.body.dataset.refresh) || 2000;
  return Math.max(200, base);
}

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function chart(kind, role) {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("class", "chart " + kind);
  svg.setAttribute("id", "chart-" + kind + "-" + role);
  svg.setAttribute("viewBox", `0 0 ${WIDTH} ${HEIGHT}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.dataset.points = "0";
  svg.dataset.version = "0";
  const base = document.createElementNS(SVG_NS, "line");
  base.setAttribute("class", "base");
  base.setAttribute("x1", "0"); base.setAttribute("x2", String(WIDTH));
  base.setAttribute("y1", String(HEIGHT - 1)); base.setAttribute("y2", String(HEIGHT - 1));
  const line = document.createElementNS(SVG_NS, "polyline");
  const title = document.createElementNS(SVG_NS, "title");
  svg.append(base, line, title);
  return svg;
}

function draw(svg, values) {
  const max = Math.max(1, ...values);
  const step = WIDTH / (HISTORY - 1);
  const offset = WIDTH - step * (values.length - 1);
  const points = values.map((v, i) =>
    `${(offset + i * step).toFixed(1)},${(HEIGHT - 1 - (v / max) * (HEIGHT - 4)).toFixed(1)}`);
  svg.querySelector("polyline").setAttribute("points", points.join(" "));
  svg.querySelector("title").textContent = `last ${format(values[values.length - 1])}, max ${format(max)}`;
  svg.dataset.points = String(values.length);
  svg.dataset.last = String(values[values.length - 1]);
  svg.dataset.max = String(max);
  svg.dataset.version = String(Number(svg.dataset.version) + 1);
}

function format(v) {
  if (v === undefined || v === null || v === "") return "";
  if (typeof v !== "number") return String(v);
  if (Math.abs(v) >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (Math.abs(v) >= 1e4) return (v / 1e3).toFixed(1) + "k";
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

function duration(s) {
  if (typeof s !== "number") return "";
  if (s < 120) return Math.round(s) + "s";
  if (s < 7200) return Math.round(s / 60) + "m";
  if (s < 172800) return Math.round(s / 3600) + "h";
  return Math.round(s / 86400) + "d";
}

function badge(healthy) {
  return el("span", {class: "badge " + (healthy ? "healthy" : "unhealthy")}, healthy ? "healthy" : "unhealthy");
}

function roleRow(role) {
  const id = "role-" + role.name;
  let row = document.getElementById(id);
  if (!row) {
    row = el("tr", {id: id});
    for (const cls of ["name", "health", "state", "num processes", "num restarts", "num uptime", "num rate",
                       "rate-chart", "num lag", "lag-chart", "error"]) row.append(el("td", {class: cls}));
    row.querySelector(".name").textContent = role.name;
    row.querySelector(".rate-chart").append(chart("rate", role.name));
    row.querySelector(".lag-chart").append(chart("lag", role.name));
    document.querySelector("#roles tbody").append(row);
  }
  return row;
}

function showRole(role) {
  if (!role || typeof role.name !== "string") return;
  const row = roleRow(role);
  row.querySelector(".health").replaceChildren(badge(role.healthy === true));
  row.querySelector(".state").textContent = role.state ?? "";
  row.querySelector(".processes").textContent =
    role.processes === undefined ? "" : `${role.running ?? "?"}/${role.processes}`;
  row.querySelector(".restarts").textContent = format(role.restarts);
  row.querySelector(".uptime").textContent = duration(role.uptime);
  row.querySelector(".rate").textContent = format(role.rate);
  row.querySelector(".lag").textContent = format(role.lag);
  row.querySelector(".error").textContent = role.last_error ?? "";
  const h = history.get(role.name) ?? {rate: [], lag: []};
  history.set(role.name, h);
  for (const kind of ["rate", "lag"]) {
    const v = Number(role[kind]);
    h[kind].push(Number.isFinite(v) ? v : 0);
    if (h[kind].length > HISTORY) h[kind].shift();
    draw(row.querySelector(`svg.chart.${kind}`), h[kind]);
  }
}

function showAlerts(alerts) {
  const body = document.querySelector("#alerts tbody");
  const rows = (Array.isArray(alerts) ? alerts : []).slice(0, 50).map((a) => {
    const tr = el("tr", {class: "alert-row"});
    tr.append(el("td", {}, a.time ?? (a.at ? new Date(a.at).toISOString() : "")));
    const kind = el("td");
    kind.append(el("span", {class: "badge " + (a.kind === "resolved" ? "resolved" : "alert")}, a.kind ?? "alert"));
    tr.append(kind, el("td", {class: "severity-" + (a.severity ?? "")}, a.severity ?? ""),
              el("td", {}, a.rule ?? ""), el("td", {}, a.key ?? ""), el("td", {}, a.summary ?? ""));
    return tr;
  });
  body.replaceChildren(...rows);
  document.getElementById("no-alerts").hidden = rows.length > 0;
}

function showOverall(data) {
  const roles = Array.isArray(data.roles) ? data.roles : [];
  const healthy = typeof data.healthy === "boolean" ? data.healthy : roles.every((r) => r.healthy === true);
  const overall = document.getElementById("overall");
  overall.className = "badge " + (healthy ? "healthy" : "unhealthy");
  overall.textContent = healthy ? "healthy" : "unhealthy";
  document.getElementById("node").textContent = data.node ?? "";
  const at = typeof data.generated === "number" ? new Date(data.generated * 1000) : new Date();
  document.getElementById("updated").textContent = "updated " + at.toLocaleTimeString();
  document.body.dataset.updates = String(Number(document.body.dataset.updates ?? 0) + 1);
}

function unavailable(why) {
  const overall = document.getElementById("overall");
  overall.className = "badge unknown";
  overall.textContent = "status unavailable";
  document.getElementById("updated").textContent = why;
}

async function poll() {
  try {
    const resp = await fetch("/status.json", {cache: "no-store"});
    const data = await resp.json();
    if (!resp.ok) throw new Error(data.error ?? resp.statusText);
    showOverall(data);
    (Array.isArray(data.roles) ? data.roles : []).forEach(showRole);
    showAlerts(data.alerts);
  } catch (err) {
    unavailable(String(err.message ?? err));
  } finally {
    setTimeout(poll, refreshMs());
  }
}

poll();
