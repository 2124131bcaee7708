// The Data, Plans and Runs lists: filters, refresh, auto-refresh and pages of 100, newest first.
import { api } from "./api.js";
import { activeInput, filterForm, statusInput, tagInput, textInput, windowInput } from "./filters.js";
import { errorBox, h, none, planTitle, shortId, status, tags, time } from "./ui.js";

const PAGE = 100;
// Pages: "← Newer" and "Older →" (Plans: by plan ID).

/** One list view; ``spec`` says how to fetch, filter and draw it. */
function listView(spec) {
  return async (ctx) => {
    const page = Math.max(0, Number(ctx.query.get("page")) || 0);
    const body = h("tbody");
    const info = h("span", { class: "muted count" });
    const pager = h("span", { class: "pager" });
    const load = async () => {
      try {
        const found = await spec.fetch({ ...spec.params(ctx.query), limit: PAGE + 1, offset: page * PAGE, order: spec.order || "desc" });
        if (!ctx.alive()) return;
        body.replaceChildren(...found.slice(0, PAGE).map(spec.row));
        if (!found.length) body.append(h("tr", {}, h("td", { colspan: spec.columns.length, class: "muted" }, "Nothing matches.")));
        info.textContent = `${page * PAGE + Math.min(found.length, 1)}–${page * PAGE + Math.min(found.length, PAGE)}, refreshed ${new Date().toLocaleTimeString()}`;
        pager.replaceChildren(pageLink(ctx, page - 1, "← Newer", page > 0), pageLink(ctx, page + 1, "Older →", found.length > PAGE));
      } catch (e) {
        if (e.status === 401) throw e;
        body.replaceChildren(h("tr", {}, h("td", { colspan: spec.columns.length }, errorBox(e))));
      }
    };
    const auto = h("input", { type: "checkbox", name: "auto" });
    let timer = null;
    auto.addEventListener("change", () => {
      clearInterval(timer);
      timer = auto.checked ? setInterval(() => load().catch(ctx.fail), spec.every * 1000) : null;
    });
    ctx.cleanup(() => clearInterval(timer));
    const toolbar = h("div", { class: "toolbar" }, h("button", { name: "refresh", onclick: () => load().catch(ctx.fail) }, "Refresh"), h("label", {}, auto, ` Auto (${spec.every}s)`), info, pager);
    const table = h("table", { class: `list ${spec.name}` }, h("thead", {}, h("tr", {}, spec.columns.map((c) => h("th", {}, c)))), body);
    ctx.show(h("h2", {}, spec.title), filterForm(`#/${spec.name}`, ctx.query, spec.filters(ctx.query)), toolbar, table);
    await load();
  };
}

function pageLink(ctx, page, label, enabled) {
  if (!enabled) return h("span", { class: "muted" }, label);
  const q = new URLSearchParams(ctx.query);
  q.set("page", page);
  return h("a", { href: `#${ctx.path}?${q}`, class: "page" }, label);
}

const actions = (...links) => h("td", { class: "actions" }, links.filter(Boolean).map(([href, text]) => h("a", { href, class: "button" }, text)));

export const dataList = listView({
  name: "data",
  title: "Data",
  every: 30,
  fetch: api.findData,
  params: (q) => ({ tag: q.getAll("tag"), since: q.get("since"), duration: q.get("duration") }),
  filters: (q) => [tagInput("tag", "Tags ", q.getAll("tag")), windowInput(q)],
  columns: ["Knit ID", "Tags", "Made by", ""],
  row: (d) =>
    h(
      "tr",
      { "data-id": d.knitId },
      h("td", {}, shortId(d.knitId, `#/data/${d.knitId}`)),
      h("td", {}, tags(d.tags)),
      h("td", {}, status(d.upstream.run.status), " ", planTitle(d.upstream.run.plan)),
      actions([`#/data/${d.knitId}`, "Details"], [`#/lineage/data/${d.knitId}`, "Lineage"]),
    ),
});

const mounts = (list) => (list || []).map((m) => h("div", { class: "mount" }, h("code", {}, m.path), " ", tags(m.tags)));

export const planList = listView({
  name: "plans",
  title: "Plans",
  order: "asc", // plan IDs, as Knitfab lists them: plans have no time
  every: 30,
  fetch: api.findPlans,
  params: (q) => ({ active: q.get("active"), image: q.get("image"), in_tag: q.getAll("in_tag"), out_tag: q.getAll("out_tag") }),
  filters: (q) => [activeInput(q.get("active")), textInput("image", "Image", q.get("image"), "repo:tag"), tagInput("in_tag", "Tags for inputs ", q.getAll("in_tag")), tagInput("out_tag", "Tags for outputs ", q.getAll("out_tag"))],
  columns: ["Plan ID", "Image", "Active", "Inputs", "Outputs", ""],
  row: (p) =>
    h(
      "tr",
      { "data-id": p.planId },
      h("td", {}, shortId(p.planId, `#/plans/${p.planId}`)),
      h("td", {}, planTitle(p)),
      h("td", {}, h("span", { class: p.active ? "active" : "inactive" }, p.active ? "active" : "inactive")),
      h("td", {}, mounts(p.inputs)),
      h("td", {}, mounts(p.outputs), p.log ? h("div", { class: "mount" }, h("code", {}, "(log)"), " ", tags(p.log.tags)) : null),
      actions([`#/plans/${p.planId}`, "Details"], [`#/plangraph/${p.planId}`, "Plan graph"]),
    ),
});

const ids = (list) => (list && list.length ? list.map((a) => h("div", {}, shortId(a.knitId, `#/data/${a.knitId}`), " ", h("code", {}, a.path))) : none());
const LOGGED = ["running", "aborting", "completing", "done", "failed"];

export const runList = listView({
  name: "runs",
  title: "Runs",
  every: 5,
  fetch: api.findRuns,
  params: (q) => ({ plan: q.get("plan"), knitIdInput: q.get("knitIdInput"), knitIdOutput: q.get("knitIdOutput"), status: q.get("status"), since: q.get("since"), duration: q.get("duration") }),
  filters: (q) => [
    textInput("plan", "Plan IDs", q.get("plan"), "id, id, …"),
    textInput("knitIdInput", "Input Knit IDs", q.get("knitIdInput"), "id, id, …"),
    textInput("knitIdOutput", "Output Knit IDs", q.get("knitIdOutput"), "id, id, …"),
    statusInput((q.get("status") || "").split(",")),
    windowInput(q),
  ],
  columns: ["Run ID", "Status", "Updated", "Plan", "Inputs", "Outputs", ""],
  row: (r) =>
    h(
      "tr",
      { "data-id": r.runId },
      h("td", {}, shortId(r.runId, `#/runs/${r.runId}`)),
      h("td", {}, status(r.status), r.exit ? h("div", { class: "exit", title: r.exit.message }, `exit ${r.exit.code} ${r.exit.message}`) : null),
      h("td", {}, time(r.updatedAt)),
      h("td", {}, h("a", { href: `#/plans/${r.plan.planId}` }, planTitle(r.plan))),
      h("td", {}, ids(r.inputs)),
      h("td", {}, ids(r.outputs), r.log ? h("div", {}, shortId(r.log.knitId, `#/data/${r.log.knitId}`), " ", h("code", {}, "(log)")) : null),
      actions([`#/runs/${r.runId}`, "Details"], [`#/lineage/run/${r.runId}`, "Lineage"], r.log && LOGGED.includes(r.status) && [`#/runs/${r.runId}/log`, "Log"]),
    ),
});
