// New run: an example recipe (or edited YAML) plus key=value overrides, validated by the same code as
// `tuneforge train`; problems are listed by field, and Start launches `tuneforge train` as a job.
import { api, h, every, showError } from "../app.js";

export async function renderNew(root, params) {
  let config, examples;
  try {
    [config, { examples }] = await Promise.all([api("/api/config"), api("/api/examples")]);
  } catch (e) { return showError(root, e); }
  let edited = false, stopWatch = null;
  const pick = h("select", { id: "example" }, examples.map((e) => h("option", { value: e.name }, e.name)));
  const about = h("p", { class: "muted" });
  const text = h("textarea", { id: "recipe", rows: 18, spellcheck: "false", oninput: () => { edited = true; mode.textContent = "edited: the text below is what runs"; } });
  const mode = h("span", { class: "muted" });
  const overrides = h("textarea", { id: "overrides", rows: 4, spellcheck: "false" });
  overrides.value = (params.get("set") ? params.getAll("set") : config.default_overrides).join("\n");
  const problems = h("div", { id: "problems" }), result = h("div");
  const load = () => {
    const ex = examples.find((e) => e.name === pick.value);
    about.textContent = ex ? ex.description : "";
    text.value = ex ? ex.text : "";
    edited = false; mode.textContent = ex ? `from examples/${ex.name}` : "";
  };
  pick.addEventListener("change", load);
  if (params.get("example")) pick.value = params.get("example");
  load();

  const request = () => ({ ...(edited || !examples.length ? { text: text.value } : { example: pick.value }),
                           overrides: overrides.value.split("\n").map((s) => s.trim()).filter(Boolean) });
  const showProblems = (res) => {
    if (res.ok) {
      problems.replaceChildren(h("p", { class: "ok" }, `recipe OK: run name ${res.name}, writes to ${res.output_dir}`));
      return;
    }
    problems.replaceChildren(h("h2", {}, `${res.problems.length} problem(s)`),
      ...res.problems.map((p) => h("div", { class: "field-error", "data-field": p.path || "" },
        p.path ? h("code", {}, p.path) : h("code", {}, "recipe"), " ", p.message)),
      h("details", {}, h("summary", {}, "as the CLI prints it"), h("pre", {}, res.message)));
  };
  const validate = async () => {
    try { showProblems(await api("/api/recipes/validate", { method: "POST", body: request() })); }
    catch (e) { problems.replaceChildren(h("p", { class: "error" }, e.message)); }
  };
  const start = async (btn) => {
    btn.disabled = true;
    try {
      const res = await api("/api/jobs", { method: "POST", body: request() });
      problems.replaceChildren(h("p", { class: "ok" }, `started job ${res.job.id} (${res.name}); waiting for its run folder…`));
      if (stopWatch) stopWatch();
      stopWatch = every(1500, async () => {
        const { jobs } = await api("/api/jobs");
        const job = jobs.find((j) => j.id === res.job.id);
        if (job && job.run) { stopWatch(); location.href = "/runs/" + encodeURIComponent(job.run); }
        else if (job && job.state === "failed") {
          stopWatch();
          const log = await api(`/api/jobs/${job.id}/log`);
          result.replaceChildren(h("p", { class: "error" }, "the job failed before creating a run folder:"), h("pre", {}, log.log));
        }
      });
    } catch (e) {
      if (e.status === 422) showProblems(e.body); else problems.replaceChildren(h("p", { class: "error" }, e.message));
    } finally { btn.disabled = false; }
  };
  root.replaceChildren(h("h1", {}, "New run"),
    h("div", { class: "row" },
      h("div", {}, h("label", { for: "example" }, "Example recipe"), pick, about,
        h("label", { for: "recipe" }, "Recipe ", mode), text),
      h("div", {}, h("label", { for: "overrides" }, "Overrides (key.sub=value, one a line)"), overrides,
        h("p", { class: "muted" }, "Runs are written under ", config.runs_dirs.join(", "), "."),
        h("p", {}, h("button", { class: "secondary", id: "validate", onclick: validate }, "Validate"), " ",
          h("button", { id: "start", onclick: (e) => start(e.target) }, "Start training")),
        problems, result)));
  return () => { if (stopWatch) stopWatch(); };
}
