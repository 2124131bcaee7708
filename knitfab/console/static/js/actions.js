// Actions that change things, each behind a dialog that says what will happen or, when
// Knitfab's rules refuse it, why. The server checks every rule again; its refusal is shown too.
import { api, headers } from "./api.js";
import { h } from "./ui.js";

/** Ask, then do. ``refused``: a reason the action cannot be done (the dialog only explains). */
export function confirmAction({ title, what, refused, run, done, extra }) {
  const dialog = document.getElementById("confirm");
  const result = h("p", { class: "error", role: "alert", hidden: true });
  const close = () => dialog.close();
  const go = async (e) => {
    e.preventDefault();
    ok.disabled = true;
    try {
      await run();
      close();
      done?.();
    } catch (err) {
      result.hidden = false;
      result.textContent = `Knitfab refused: ${err.message}`;
      ok.disabled = false;
    }
  };
  const ok = h("button", { type: "submit", class: "danger", name: "confirm" }, title);
  const buttons = refused ? [h("button", { type: "button", name: "close", onclick: close }, "Close")] : [ok, h("button", { type: "button", name: "cancel", onclick: close }, "Cancel")];
  const body = refused ? h("p", { class: "refused" }, "Knitfab does not allow this: ", refused) : h("p", { class: "what" }, what);
  dialog.replaceChildren(h("form", { method: "dialog", onsubmit: go }, h("h3", {}, title), body, extra || null, result, h("div", { class: "buttons" }, buttons)));
  dialog.showModal();
}

export function button(label, name, onclick, refused) {
  return h("button", { name, onclick, class: refused ? "refusable" : null, title: refused || null }, label);
}

// -- Data --------------------------------------------------------------------------------------

const systemKey = (tag) => tag.startsWith("knit#");

export function addTag(knitId, tag, done) {
  const refused = !tag.includes(":") ? "a tag is KEY:VALUE." : systemKey(tag) ? `keys starting with "knit#" are system tags, which Knitfab sets itself.` : null;
  confirmAction({
    title: "Add tag",
    what: `Data ${knitId} gets the tag ${tag}. Plans whose inputs ask for all of this Data's tags will then be offered it, and may start new runs.`,
    refused,
    run: () => api.tagData(knitId, { add: [tag] }),
    done,
  });
}

export function removeTag(knitId, tag, done) {
  confirmAction({
    title: "Remove tag",
    what: `Data ${knitId} loses the tag ${tag}. Plans that need it will no longer be offered this Data (runs already made stay).`,
    run: () => api.tagData(knitId, { remove: [tag] }),
    done,
  });
}

/** Download a Data's tar.gz; with a token the browser cannot send it on a plain link, so fetch. */
export async function download(knitId) {
  const url = `/api/data/${encodeURIComponent(knitId)}/`;
  const res = await fetch(url, { headers: headers() });
  if (!res.ok) throw new Error(`download failed: ${res.status}`);
  const link = h("a", { href: URL.createObjectURL(await res.blob()), download: `${knitId}.tar.gz` });
  document.body.append(link);
  link.click();
  link.remove();
}

// -- runs (spec §6.3, §6.7, §6.8) --------------------------------------------------------------

const STOPPABLE = ["ready", "starting", "running"];
const ABORTABLE = ["deactivated", "waiting", ...STOPPABLE];
const FINISHED = ["done", "failed"];

export function abort(run, done) {
  confirmAction({
    title: "Abort",
    what: `Run ${run.runId} is stopped and fails (exit 253, "aborted by user"): it becomes aborting, then failed. Its outputs are not given to other plans.`,
    refused: ABORTABLE.includes(run.status) ? null : `only a run that is deactivated, waiting, ready, starting or running can be aborted; this one is ${run.status}.`,
    run: () => api.abort(run.runId),
    done,
  });
}

export function tearoff(run, done) {
  confirmAction({
    title: "Tear off",
    what: `Run ${run.runId} is stopped and counts as successful (exit 0, "stopped by user"): it becomes completing, then done, and its outputs as they are now go to the plans that take them.`,
    refused: STOPPABLE.includes(run.status) ? null : `only a ready, starting or running run can be torn off; this one is ${run.status}.`,
    run: () => api.tearoff(run.runId),
    done,
  });
}

/** Why retry and delete are refused: not finished, a root run, or outputs in use downstream. */
function finishedAndFree(run, used, verb) {
  if (!FINISHED.includes(run.status)) return `only a done or failed run can be ${verb}; this one is ${run.status}. Wait for it to finish, or abort it.`;
  if (used.length) return `its outputs are inputs of run${used.length > 1 ? "s" : ""} ${used.join(", ")}. Delete those runs first.`;
  return null;
}

export function retry(run, used, done) {
  const root = !run.plan.image ? `run ${run.runId} is a root run (${run.plan.name}): it made its Data from outside and cannot be redone.` : null;
  confirmAction({
    title: "Retry",
    what: `Run ${run.runId} runs again: it goes back to waiting, its outputs and log lose their tags and are dropped, and it makes new ones with new Knit IDs.`,
    refused: finishedAndFree(run, used, "retried") || root,
    run: () => api.retry(run.runId),
    done,
  });
}

export function remove(run, used, done) {
  const what = run.inputs.length
    ? `Run ${run.runId} is deleted with its outputs and log. It stays as "invalidated" so that the same inputs never run again; its Data are gone.`
    : `Run ${run.runId} (an upload) is deleted completely, with the Data it uploaded.`;
  confirmAction({ title: "Delete", what, refused: finishedAndFree(run, used, "deleted"), run: () => api.remove(run.runId), done });
}

// -- plans -------------------------------------------------------------------------------------

const pseudo = (plan) => (!plan.image ? `${plan.name} is a pseudo plan of Knitfab's own; it is always active and takes no resources.` : null);

export function setActive(plan, on, done) {
  const what = on
    ? `Plan ${plan.planId} becomes active: its deactivated runs become waiting and will run, and new input combinations make new runs.`
    : `Plan ${plan.planId} becomes inactive: its waiting runs are deactivated and wait until it is active again. Runs already started carry on.`;
  confirmAction({ title: on ? "Activate" : "Deactivate", what, refused: pseudo(plan), run: () => api.setActive(plan.planId, on), done });
}

export function changeResources(plan, done) {
  const rows = Object.entries(plan.resources || {}).map(([k, v]) => resourceRow(k, v));
  const table = h("div", { class: "resources" }, rows, resourceRow("", ""));
  const more = h("button", { type: "button", name: "more", onclick: () => table.append(resourceRow("", "")) }, "+ resource");
  const run = () => {
    const set = {};
    const unset = [];
    for (const row of table.querySelectorAll(".resource")) {
      const [name, value] = [row.querySelector("[name=type]").value.trim(), row.querySelector("[name=quantity]").value.trim()];
      if (name && value) set[name] = value;
      else if (name && row.dataset.had) unset.push(name);
    }
    return api.resources(plan.planId, { set, unset });
  };
  confirmAction({
    title: "Change resources",
    what: `Runs of plan ${plan.planId} that start from now on ask for these resources (quantities such as 500m, 2, 1Gi); runs already started keep theirs. An empty quantity removes the resource.`,
    refused: pseudo(plan),
    extra: h("div", {}, table, more),
    run,
    done,
  });
}

function resourceRow(name, value) {
  return h("div", { class: "resource", "data-had": name || null }, h("input", { name: "type", value: name, placeholder: "cpu", size: 10 }), " = ", h("input", { name: "quantity", value, placeholder: "1", size: 10 }));
}
