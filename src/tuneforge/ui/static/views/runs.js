// Runs list: every run folder, newest first, refreshed every 3 s; tick runs to compare them.
import { api, h, fmt, duration, statusBadge, every, showError } from "../app.js";

export function renderRuns(root) {
  const picked = new Set();
  const compareBtn = h("button", { class: "secondary", disabled: true, onclick: () => {
    location.href = "/compare?runs=" + encodeURIComponent([...picked].join(","));
  } }, "Compare selected");
  const table = h("div");
  const jobs = h("div");
  root.replaceChildren(
    h("div", { class: "row" }, h("h1", {}, "Runs"),
      h("div", {}, h("a", { href: "/new" }, h("button", {}, "New run")), " ", compareBtn)),
    table, jobs);

  const draw = (data) => {
    if (!data.runs.length) {
      table.replaceChildren(h("p", { class: "muted" }, "No runs yet in ", (data.dirs || []).join(", "),
        ". Start one from ", h("a", { href: "/new" }, "New run"), " or with `tuneforge train`."));
    } else {
      const head = ["", "run", "status", "method", "model", "steps", "best val loss", "started", "duration", ""];
      table.replaceChildren(h("table", { id: "runs" },
        h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))),
        h("tbody", {}, data.runs.map((r) => h("tr", {},
          h("td", {}, h("input", { type: "checkbox", checked: picked.has(r.name), onchange: (e) => {
            e.target.checked ? picked.add(r.name) : picked.delete(r.name);
            compareBtn.disabled = picked.size < 2;
          } })),
          h("td", {}, h("a", { href: "/runs/" + encodeURIComponent(r.name) }, r.name)),
          h("td", {}, statusBadge(r.status), r.stop_requested && r.status === "running" ? " (stopping)" : ""),
          h("td", {}, `${r.objective}/${r.method}`),
          h("td", { title: r.model }, r.model.split("/").pop()),
          h("td", { class: "num" }, r.steps),
          h("td", { class: "num" }, fmt(r.best_val_loss)),
          h("td", {}, r.started.replace("T", " ")),
          h("td", { class: "num" }, duration(r.duration_s)),
          h("td", {}, r.has_final ? h("a", { href: "/chat?run=" + encodeURIComponent(r.name) }, "chat") : ""),
        )))));
    }
    // Jobs still starting (no run folder yet) or that died before making one: only their log says why.
    const orphans = data.jobs.filter((j) => !j.run);
    jobs.replaceChildren(...(orphans.length ? [h("h2", {}, "Jobs without a run folder"),
      h("table", {}, h("tbody", {}, orphans.map((j) => h("tr", {},
        h("td", {}, j.id), h("td", {}, statusBadge(j.state)), h("td", {}, j.recipe),
        h("td", {}, h("a", { href: "/api/jobs/" + j.id + "/log" }, "log"))))))] : []));
  };
  return every(3000, async () => {
    try { draw(await api("/api/runs")); } catch (e) { showError(table, e); }
  });
}
