// Compare runs: headline metrics side by side (best per metric in bold) and every run's loss curves.
import { api, h, fmt, showError } from "../app.js";
import { drawChart, colorFor } from "./chart.js";

export async function renderCompare(root, params) {
  let all;
  try { all = (await api("/api/runs")).runs; } catch (e) { return showError(root, e); }
  const chosen = new Set((params.get("runs") || "").split(",").filter(Boolean));
  const out = h("div");
  const boxes = all.map((r) => h("label", {}, h("input", { type: "checkbox", value: r.name, checked: chosen.has(r.name),
    onchange: (e) => { e.target.checked ? chosen.add(r.name) : chosen.delete(r.name); } }), " ", r.name, " ",
    h("span", { class: "muted" }, r.status)));
  const go = () => {
    history.replaceState(null, "", "/compare?runs=" + encodeURIComponent([...chosen].join(",")));
    show();
  };
  root.replaceChildren(h("h1", {}, "Compare runs"),
    all.length ? h("details", { open: !chosen.size }, h("summary", {}, "choose runs"), ...boxes,
                   h("p", {}, h("button", { onclick: go }, "Compare"))) : h("p", { class: "muted" }, "no runs yet"),
    out);
  const show = async () => {
    if (!chosen.size) { out.replaceChildren(h("p", { class: "muted" }, "Tick two or more runs.")); return; }
    let data;
    try { data = await api("/api/compare?runs=" + encodeURIComponent([...chosen].join(","))); }
    catch (e) { return showError(out, e); }
    const canvas = h("canvas", { id: "compare-chart" });
    const series = [], legend = h("div", { class: "legend" });
    data.runs.forEach((r, i) => {
      for (const key of ["train_loss", "val_loss"]) {
        const pts = (r.curves[key] || []);
        if (!pts.length) continue;
        const color = colorFor(null, i);
        series.push({ label: `${r.name} ${key}`, color, dashed: key === "val_loss", points: pts });
        const sw = h("span", { class: "swatch" });
        sw.style.background = color;  // CSSOM, allowed by the page's CSP (unlike style="" attributes)
        legend.append(h("span", {}, sw, `${r.name} ${key === "val_loss" ? "val (dashed)" : "train"}`));
      }
    });
    const head = ["metric", ...data.runs.map((r) => r.name)];
    out.replaceChildren(
      h("table", { id: "compare" }, h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))),
        h("tbody", {},
          h("tr", {}, h("td", {}, "status"), data.runs.map((r) => h("td", {}, r.status))),
          h("tr", {}, h("td", {}, "method"), data.runs.map((r) => h("td", {}, `${r.objective}/${r.method}`))),
          h("tr", {}, h("td", {}, "steps"), data.runs.map((r) => h("td", { class: "num" }, r.steps))),
          data.metrics.map((m) => h("tr", {}, h("td", {}, m), data.runs.map((r) =>
            h("td", { class: "num" + (data.best[m] === r.name ? " best" : "") }, fmt(r.metrics[m]))))))),
      h("h2", {}, "Loss curves"), canvas, legend);
    drawChart(canvas, series);
  };
  show();
}
