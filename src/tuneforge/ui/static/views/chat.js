// Chat with a finished run's model: load it (in the background, one model at a time), then talk.
import { api, h, every, showError } from "../app.js";

export async function renderChat(root, params) {
  let runs;
  try { runs = (await api("/api/runs")).runs.filter((r) => r.has_final); } catch (e) { return showError(root, e); }
  if (!runs.length) {
    root.replaceChildren(h("h1", {}, "Chat"), h("p", { class: "muted" }, "No run has a final model yet."));
    return;
  }
  const pick = h("select", { id: "chat-run" }, runs.map((r) => h("option", { value: r.name }, r.name)));
  if (params.get("run")) pick.value = params.get("run");
  const state = h("span", { class: "muted", id: "chat-state" });
  const log = h("div", { class: "chat-log" }), input = h("textarea", { rows: 3, id: "chat-input" });
  const temp = h("input", { type: "text", value: "0", size: 4, id: "chat-temp" });
  const send = h("button", { disabled: true }, "Send");
  let messages = [], loaded = null;
  const loadBtn = h("button", { class: "secondary", onclick: async () => {
    try { show(await api("/api/chat/load", { method: "POST", body: { run: pick.value } })); }
    catch (e) { state.textContent = e.message; }
  } }, "Load model");
  const show = (s) => {
    loaded = s.state === "ready" ? s.run : null;
    state.textContent = s.state === "empty" ? "no model loaded" :
      `${s.run}: ${s.state}${s.load_s ? ` (${s.load_s}s)` : ""}${s.error ? " — " + s.error : ""}`;
    send.disabled = loaded !== pick.value;
  };
  const turn = (m) => log.append(h("div", { class: `msg ${m.role}` }, m.content));
  send.addEventListener("click", async () => {
    const text = input.value.trim();
    if (!text) return;
    const msg = { role: "user", content: text };
    messages.push(msg); turn(msg); input.value = ""; send.disabled = true;
    try {
      const reply = await api("/api/chat/reply", { method: "POST", body: {
        run: pick.value, messages, temperature: Number(temp.value) || 0 } });
      messages.push(reply); turn(reply);
    } catch (e) { log.append(h("div", { class: "error" }, e.message)); messages.pop(); }
    send.disabled = loaded !== pick.value;
  });
  pick.addEventListener("change", () => { messages = []; log.replaceChildren(); send.disabled = loaded !== pick.value; });
  root.replaceChildren(h("h1", {}, "Chat"), h("p", {}, pick, " ", loadBtn, " ", state), log,
    h("label", { for: "chat-input" }, "Message"), input,
    h("p", {}, "temperature ", temp, " ", send, " ",
      h("button", { class: "secondary", onclick: () => { messages = []; log.replaceChildren(); } }, "Clear")));
  return every(1500, async () => show(await api("/api/chat")));
}
