// The log of a run: followed live while the run runs (GET /api/runs/ID/log?follow), the whole
// log Data once it has finished. A run that has not started yet is retried every 5 s.
import { ApiError, api, headers } from "./api.js";
import { h, shortId, status } from "./ui.js";

const LIVE = ["starting", "running"];
const NOT_YET = ["deactivated", "waiting", "ready"];
const RETRY_MS = 5000;

export async function logView(ctx, runId) {
  const text = h("pre", { class: "log", "aria-live": "polite" });
  const state = h("span", { class: "muted", id: "log-state" });
  const badge = h("span");
  const stick = h("input", { type: "checkbox", checked: true, name: "stick" });
  const controller = new AbortController();
  ctx.cleanup(() => controller.abort());
  ctx.show(h("h2", {}, "Log of run ", shortId(runId, `#/runs/${runId}`), " ", badge), h("div", { class: "toolbar" }, h("label", {}, stick, " Keep the end in view"), state), text);
  const view = { text, state, stick, signal: controller.signal };
  while (ctx.alive()) {
    const run = await api.run(runId);
    badge.replaceChildren(status(run.status));
    if (!run.log) return void (state.textContent = "This run's plan keeps no log.");
    if (NOT_YET.includes(run.status)) state.textContent = `The run is ${run.status}; trying again every 5 s.`;
    else if (await stream(view, runId, LIVE.includes(run.status))) {
      if (!LIVE.includes(run.status)) return void (state.textContent = `The whole log (the run is ${run.status}).`);
      state.textContent = "Following…";
    }
    await pause(LIVE.includes(run.status) ? 1000 : RETRY_MS, controller.signal);
  }
}

/** Read the log into ``view.text``; false when the server says to come back later. */
async function stream(view, runId, follow) {
  const url = `/api/runs/${encodeURIComponent(runId)}/log${follow ? "?follow" : ""}`;
  const res = await fetch(url, { headers: headers(), signal: view.signal });
  if (res.status === 401) throw new ApiError(401, "sign in again");
  if (!res.ok) return (view.state.textContent = `The log is not there yet (${res.status}); trying again.`), false;
  if (follow) view.state.textContent = "Following…";
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let shown = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    shown += value;
    view.text.textContent = shown;
    if (view.stick.checked) view.text.scrollTop = view.text.scrollHeight;
  }
  view.text.textContent = shown; // each stream starts from the log's beginning
  return true;
}

const pause = (ms, signal) => new Promise((done) => {
  const timer = setTimeout(done, ms);
  signal.addEventListener("abort", () => (clearTimeout(timer), done()));
});
