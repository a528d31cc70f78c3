// One run, live: status, train/val loss chart fed by the metrics cursor (only new rows each poll),
// a Stop button (the stop-request file), the job's log, and before/after tables once it has finished.
import { api, h, fmt, duration, statusBadge, every, showError } from "../app.js";
import { drawChart, colorFor } from "./chart.js";

export function renderRun(root, name) {
  const enc = encodeURIComponent(name);
  const rows = [];
  let cursor = null, status = null;
  const head = h("div"), canvas = h("canvas", { id: "loss" }), legend = h("div", { class: "legend" });
  const last = h("div", { class: "muted" }), details = h("div"), logBox = h("div"), note = h("p");
  root.replaceChildren(head, note, h("h2", {}, "Loss"), canvas, legend, last, logBox, details);

  const redraw = () => {
    const series = ["train_loss", "val_loss"].map((key, i) => ({
      label: key, color: colorFor(key, i), dashed: key === "val_loss",
      points: rows.filter((r) => typeof r[key] === "number").map((r) => [r.step ?? 0, r[key]]) }));
    drawChart(canvas, series);
    legend.replaceChildren(...series.map((s) => h("span", {},
      h("span", { class: `swatch sw-${s.label}` }), `${s.label} (${s.points.length})`)));
    const tail = rows[rows.length - 1];
    last.textContent = tail ? "last row: " + Object.entries(tail).map(([k, v]) => `${k}=${fmt(v)}`).join("  ") : "";
  };

  const stop = async (btn) => {
    btn.disabled = true;
    try { note.className = "ok"; note.textContent = (await api(`/api/runs/${enc}/stop`, { method: "POST" })).message; }
    catch (e) { note.className = "error"; note.textContent = e.message; btn.disabled = false; }
  };

  const drawHead = (d) => {
    const stopBtn = h("button", { class: "danger", id: "stop", disabled: d.status !== "running" || d.stop_requested,
                                  onclick: (e) => stop(e.target) },
                       d.status === "running" && d.stop_requested ? "Stop requested" : "Stop");
    head.replaceChildren(
      h("h1", {}, d.name, " ", statusBadge(d.status)),
      h("div", { class: "row" },
        h("div", { class: "kv card" },
          h("span", {}, "objective / method"), h("span", {}, `${d.objective} / ${d.method}`),
          h("span", {}, "model"), h("span", {}, d.model),
          h("span", {}, "steps"), h("span", {}, d.steps),
          h("span", {}, "best val loss"), h("span", {}, fmt(d.best_val_loss)),
          h("span", {}, "started"), h("span", {}, d.started.replace("T", " ")),
          h("span", {}, "duration"), h("span", {}, duration(d.duration_s)),
          h("span", {}, "folder"), h("span", {}, d.path),
          h("span", {}, "checkpoints"), h("span", {}, d.checkpoints.join(", ") || "–")),
        h("div", {}, stopBtn, " ",
          d.has_final ? h("a", { href: "/chat?run=" + enc }, h("button", { class: "secondary" }, "Chat with it")) : "",
          h("p", { class: "muted" }, d.resumable ? "Resumable: tuneforge train <recipe> --resume auto" : ""),
          h("ul", {}, d.files.map((f) => h("li", {}, h("a", { href: `/api/runs/${enc}/files/${f}`, target: "_blank",
                                                                rel: "noopener" }, f)))))));
  };

  const drawDetails = (d) => {
    const tables = d.before_after.map((t) => h("div", {}, h("h2", {}, "Before → after: ", t.title),
      h("table", {}, h("thead", {}, h("tr", {}, ["metric", "before", "after"].map((c) => h("th", {}, c)))),
        h("tbody", {}, t.rows.map((r) => h("tr", {}, h("td", {}, r.metric),
          h("td", { class: "num" }, fmt(r.before)), h("td", { class: "num" }, fmt(r.after))))))));
    details.replaceChildren(...tables,
      h("details", {}, h("summary", {}, "recipe (resolved, as trained)"), h("pre", {}, d.recipe_yaml)),
      d.stats.length ? h("details", {}, h("summary", {}, `statistics (${d.stats.length})`),
        h("table", {}, h("tbody", {}, d.stats.map(([k, v]) => h("tr", {}, h("td", {}, k), h("td", {}, fmt(v))))))) : "");
  };

  const refreshDetail = async () => {
    const d = await api(`/api/runs/${enc}`);
    drawHead(d);
    if (d.status !== status) drawDetails(d);  // recipe/tables change only when the status does
    status = d.status;
    if (d.job) {
      const log = await api(`/api/jobs/${d.job.id}/log`);
      logBox.replaceChildren(h("h2", {}, "Log (job ", d.job.id, ", ", d.job.state, ")"),
                             h("pre", { id: "log" }, log.log.split("\n").slice(-60).join("\n")));
    }
  };

  const poll = async () => {
    const q = cursor ? "?cursor=" + encodeURIComponent(cursor) : "";
    const got = await api(`/api/runs/${enc}/metrics${q}`);
    if (got.reset) rows.length = 0;  // the file was rewritten (a resume): start over
    rows.push(...got.rows);
    cursor = got.cursor || cursor;
    if (got.rows.length || got.reset || !rows.length) redraw();
    if (got.status !== status) await refreshDetail();
    return got.status;
  };

  let slow = 0;
  const stopPolling = every(2000, async () => {
    try {
      await poll();
      if (++slow % 3 === 0 && status === "running") await refreshDetail();  // duration, steps, log
    } catch (e) { if (e.status === 404) { stopPolling(); showError(root, e); } else throw e; }
  });
  window.addEventListener("resize", redraw);
  return () => { stopPolling(); window.removeEventListener("resize", redraw); };
}
