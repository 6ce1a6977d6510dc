// Small SVG charts shared by the report (autopilot report) and the live page (autopilot monitor).
// No library and no network: every page that uses this file inlines it. Each mark carries its data in
// data-* attributes (data-run, data-value) so that a test in a real browser can check what was drawn.
"use strict";

const SVGNS = "http://www.w3.org/2000/svg";
const VERDICT_COLOURS = {
  improved: "#2e7d32", baseline: "#0277bd", regressed: "#c62828", failed: "#6d4c41",
  inconclusive: "#f9a825", stopped: "#8e24aa", skipped: "#8e24aa", over_limit: "#ef6c00",
};

function svgEl(tag, attrs, parent) {
  const node = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

function linear(d0, d1, r0, r1) {
  const span = d1 - d0 || 1;
  return (v) => r0 + ((v - d0) / span) * (r1 - r0);
}

function niceTicks(lo, hi, count) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(+t.toPrecision(12));
  return ticks;
}

function fmt(v, digits) {
  return v === null || v === undefined ? "-" : Number(v).toFixed(digits === undefined ? 4 : digits);
}

// An empty chart: axes with ticks and labels; returns the svg and the two scales.
function frame(container, xDomain, yDomain, labels, integerX) {
  container.innerHTML = "";
  const width = Math.max(container.clientWidth || 0, 480), height = 300;
  const m = { left: 64, right: 16, top: 12, bottom: 40 };
  const svg = svgEl("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img" }, container);
  const x = linear(xDomain[0], xDomain[1], m.left, width - m.right);
  const y = linear(yDomain[0], yDomain[1], height - m.bottom, m.top);
  const axes = svgEl("g", { class: "axes" }, svg);
  svgEl("line", { x1: m.left, x2: width - m.right, y1: height - m.bottom, y2: height - m.bottom }, axes);
  svgEl("line", { x1: m.left, x2: m.left, y1: m.top, y2: height - m.bottom }, axes);
  for (const t of niceTicks(yDomain[0], yDomain[1], 5)) {
    svgEl("line", { class: "grid", x1: m.left, x2: width - m.right, y1: y(t), y2: y(t) }, axes);
    svgEl("text", { x: m.left - 6, y: y(t) + 4, "text-anchor": "end" }, axes).textContent = +t.toPrecision(6);
  }
  for (const t of niceTicks(xDomain[0], xDomain[1], 8).filter((t) => !integerX || Number.isInteger(t))) {
    svgEl("text", { x: x(t), y: height - m.bottom + 16, "text-anchor": "middle" }, axes).textContent = t;
  }
  svgEl("text", { x: (m.left + width - m.right) / 2, y: height - 4, "text-anchor": "middle", class: "label" },
    axes).textContent = labels[0];
  svgEl("text", { x: 12, y: (m.top + height - m.bottom) / 2, "text-anchor": "middle", class: "label",
    transform: `rotate(-90 12 ${(m.top + height - m.bottom) / 2})` }, axes).textContent = labels[1];
  return { svg, x, y, bottom: height - m.bottom };
}

function extent(values, pad) {
  const v = values.filter((x) => x !== null && x !== undefined && isFinite(x));
  if (!v.length) return [0, 1];
  let lo = Math.min(...v), hi = Math.max(...v);
  if (lo === hi) { lo -= Math.abs(lo) * 0.05 || 0.5; hi += Math.abs(hi) * 0.05 || 0.5; }
  const p = (hi - lo) * (pad || 0.05);
  return [lo - p, hi + p];
}

// Metric per run: interval bars, points coloured by verdict, the best-so-far step line, failures on the axis.
// runs: [{run_id, index, value, low, high, verdict, best_so_far}]
function metricChart(container, runs, metricName) {
  if (!runs.length) { container.textContent = "no finished run yet"; return; }
  const ys = runs.flatMap((r) => [r.value, r.low, r.high, r.best_so_far]);
  const f = frame(container, [runs[0].index - 0.5, runs[runs.length - 1].index + 0.5], extent(ys, 0.08),
    ["run (in order)", metricName], true);
  const best = runs.filter((r) => r.best_so_far !== null);
  if (best.length) {
    const d = best.map((r, i) => `${i ? "L" : "M"}${f.x(r.index - 0.5)},${f.y(r.best_so_far)}H${f.x(r.index + 0.5)}`);
    svgEl("path", { d: d.join(""), class: "best-line", "data-values": best.map((r) => r.best_so_far).join(",") },
      f.svg);
  }
  for (const r of runs) {
    const colour = VERDICT_COLOURS[r.verdict] || "#555";
    if (r.value === null) {
      const cx = f.x(r.index), cy = f.bottom - 6;
      const mark = svgEl("path", { d: `M${cx - 5},${cy + 5}L${cx + 5},${cy + 5}L${cx},${cy - 4}Z`, fill: colour,
        class: "failed-marker", "data-run": r.run_id }, f.svg);
      svgEl("title", {}, mark).textContent = `run ${r.run_id}: ${r.verdict}`;
      continue;
    }
    if (r.low !== null && r.high !== null) {
      svgEl("line", { x1: f.x(r.index), x2: f.x(r.index), y1: f.y(r.low), y2: f.y(r.high), stroke: colour,
        class: "ci-bar", "data-run": r.run_id, "data-low": r.low, "data-high": r.high }, f.svg);
    }
    const dot = svgEl("circle", { cx: f.x(r.index), cy: f.y(r.value), r: 4.5, fill: colour,
      class: `run-point verdict-${r.verdict}`, "data-run": r.run_id, "data-value": r.value }, f.svg);
    const ci = r.low !== null ? ` [${fmt(r.low)}, ${fmt(r.high)}]` : "";
    svgEl("title", {}, dot).textContent = `run ${r.run_id}: ${fmt(r.value)}${ci} ${r.verdict}`;
  }
}

// Loss against step, one path per curve: [{run_id, points: [[step, loss], ...]}].
function curvesChart(container, curves, yLabel) {
  const drawn = curves.filter((c) => c.points.length);
  if (!drawn.length) { container.textContent = "no learning curve yet"; return; }
  const steps = drawn.flatMap((c) => c.points.map((p) => p[0]));
  const f = frame(container, [Math.min(...steps), Math.max(...steps)],
    extent(drawn.flatMap((c) => c.points.map((p) => p[1])), 0.05), ["step", yLabel || "loss"]);
  drawn.forEach((c, i) => {
    const hue = Math.round((i * 360) / Math.max(drawn.length, 1));
    const d = c.points.map((p, j) => `${j ? "L" : "M"}${f.x(p[0]).toFixed(1)},${f.y(p[1]).toFixed(1)}`).join("");
    const path = svgEl("path", { d, class: "curve", stroke: `hsl(${hue},65%,42%)`, "data-run": c.run_id,
      "data-points": c.points.length, "data-last": c.points[c.points.length - 1][1] }, f.svg);
    svgEl("title", {}, path).textContent = `run ${c.run_id}`;
  });
  const legend = document.createElement("div");
  legend.className = "legend";
  drawn.forEach((c, i) => {
    const item = document.createElement("span");
    item.style.color = `hsl(${Math.round((i * 360) / Math.max(drawn.length, 1))},65%,42%)`;
    item.textContent = `■ run ${c.run_id}`;
    legend.appendChild(item);
  });
  container.appendChild(legend);
}

function verdictLegend(container) {
  container.innerHTML = Object.entries(VERDICT_COLOURS)
    .filter(([k]) => k !== "skipped")
    .map(([k, c]) => `<span style="color:${c}">● ${k}${k === "stopped" ? "/skipped" : ""}</span>`).join(" ") +
    ' <span class="best-key">── best so far</span> <span>▲ no metric</span>';
}
