// The detail of one Data, plan or run, with its actions. Also drawn in the graph's side panel.
import * as act from "./actions.js";
import { api } from "./api.js";
import { field, h, none, planTitle, section, shortId, status, tags, time } from "./ui.js";

const runLink = (run) => h("span", {}, shortId(run.runId, `#/runs/${run.runId}`), " ", status(run.status), " ", planTitle(run.plan));
const planLink = (plan) => h("span", {}, shortId(plan.planId, `#/plans/${plan.planId}`), " ", planTitle(plan));
const list = (items, draw) => (items && items.length ? h("ul", {}, items.map((i) => h("li", {}, draw(i)))) : none());
const links = (...pairs) => h("div", { class: "links" }, pairs.map(([href, text]) => h("a", { href, class: "button" }, text)));

export async function dataDetail(ctx, knitId) {
  const d = await api.data(knitId);
  const again = () => ctx.refresh();
  const input = h("input", { type: "text", name: "new-tag", placeholder: "key:value", size: 20 });
  const addTag = (e) => (e.preventDefault(), act.addTag(knitId, input.value.trim(), again));
  const up = d.upstream;
  ctx.show(
    h("h2", {}, "Data ", shortId(d.knitId)),
    h("div", { class: "toolbar" }, h("button", { name: "download", onclick: () => act.download(knitId).catch(ctx.fail) }, "Download (tar.gz)"), links([`#/lineage/data/${knitId}`, "Lineage"], [`#/lineage/data/${knitId}?up=0&down=all`, "Everything made from this"], [`#/runs?knitIdInput=${knitId}`, "Runs using it"])),
    section("Tags", tags(d.tags, (tag) => act.removeTag(knitId, tag, again)), h("form", { class: "inline", onsubmit: addTag }, input, h("button", { type: "submit", name: "add-tag" }, "Add tag"))),
    section("Upstream", h("dl", {}, field("Run", runLink(up.run)), field(up.log ? "Log of" : "Mount point", up.log ? "(log)" : h("code", {}, up.mountpoint.path), " ", tags((up.log || up.mountpoint).tags)))),
    section("Downstream runs", list(d.downstreams, (down) => [runLink(down.run), " at ", h("code", {}, down.mountpoint.path)])),
    section("Nominations", list(d.nomination, (n) => [planLink(n.plan), " at ", h("code", {}, n.path), " ", tags(n.tags)])),
  );
}

const mount = (m) => [h("code", {}, m.path), " ", tags(m.tags)];
const upstream = (u) => [planLink(u.plan), " ", u.log ? h("code", {}, "(log)") : h("code", {}, u.mountpoint.path)];
const downstream = (d) => [planLink(d.plan), " ", h("code", {}, d.mountpoint.path)];
const argv = (items) => (items && items.length ? h("code", {}, JSON.stringify(items)) : none());

export async function planDetail(ctx, planId) {
  const p = await api.plan(planId);
  const again = () => ctx.refresh();
  const node = p.on_node || {};
  const resources = Object.entries(p.resources || {});
  ctx.show(
    h("h2", {}, "Plan ", shortId(p.planId), " ", h("span", { class: p.active ? "active" : "inactive" }, p.active ? "active" : "inactive")),
    h(
      "div",
      { class: "toolbar" },
      p.active ? h("button", { name: "deactivate", onclick: () => act.setActive(p, false, again) }, "Deactivate") : h("button", { name: "activate", onclick: () => act.setActive(p, true, again) }, "Activate"),
      h("button", { name: "resources", onclick: () => act.changeResources(p, again) }, "Change resources"),
      links([`#/plangraph/${p.planId}`, "Plan graph"], [`#/runs?plan=${p.planId}`, "Runs of this plan"]),
    ),
    section(
      "Plan",
      h(
        "dl",
        {},
        field(p.image ? "Image" : "Name", planTitle(p)),
        field("Entrypoint", argv(p.entrypoint)),
        field("Args", argv(p.args)),
        field("Resources", resources.length ? resources.map(([k, v]) => h("span", { class: "tag" }, h("b", {}, k), "=", v)) : none()),
        ["may", "prefer", "must"].map((how) => field(`On node (${how})`, node[how] && node[how].length ? node[how].map((l) => h("code", { class: "label" }, l)) : none())),
        field("Service account", p.service_account || none()),
        field("Annotations", p.annotations && p.annotations.length ? p.annotations.map((a) => h("code", { class: "label" }, a)) : none()),
      ),
    ),
    section("Inputs", list(p.inputs, (i) => [mount(i), h("div", { class: "sub" }, "from ", list(i.upstreams, upstream))])),
    section("Outputs", list(p.outputs, (o) => [mount(o), h("div", { class: "sub" }, "to ", list(o.downstreams, downstream))])),
    section("Log", p.log ? [tags(p.log.tags), h("div", { class: "sub" }, "to ", list(p.log.downstreams, downstream))] : none()),
  );
}

/** The runs that use any output (or the log) of ``run``: they keep it from retry and delete. */
async function usedBy(run) {
  const made = [...run.outputs, ...(run.log ? [run.log] : [])];
  const found = await Promise.all(made.map((m) => api.data(m.knitId).catch(() => null)));
  return [...new Set(found.filter(Boolean).flatMap((d) => d.downstreams.map((down) => down.run.runId)))];
}

const assignment = (a) => [shortId(a.knitId, `#/data/${a.knitId}`), " at ", h("code", {}, a.path), " ", tags(a.tags)];

export async function runDetail(ctx, runId) {
  const r = await api.run(runId);
  const used = await usedBy(r).catch(() => []);
  const again = () => ctx.refresh();
  ctx.show(
    h("h2", {}, "Run ", shortId(r.runId), " ", status(r.status)),
    h(
      "div",
      { class: "toolbar" },
      h("button", { name: "abort", onclick: () => act.abort(r, again) }, "Abort"),
      h("button", { name: "tearoff", onclick: () => act.tearoff(r, again) }, "Tear off"),
      h("button", { name: "retry", onclick: () => act.retry(r, used, again) }, "Retry"),
      h("button", { name: "delete", class: "danger", onclick: () => act.remove(r, used, () => (location.hash = "#/runs")) }, "Delete"),
      links(...[[`#/lineage/run/${r.runId}`, "Lineage"], r.log && [`#/runs/${r.runId}/log`, "Log"]].filter(Boolean)),
    ),
    section(
      "Run",
      h(
        "dl",
        {},
        field("Status", status(r.status)),
        field("Exit", r.exit ? [h("code", {}, String(r.exit.code)), " ", r.exit.message] : none()),
        field("Plan", planLink(r.plan)),
        field("Updated at", time(r.updatedAt)),
      ),
    ),
    section("Inputs", list(r.inputs, assignment)),
    section("Outputs", list(r.outputs, assignment)),
    section("Log", r.log ? [shortId(r.log.knitId, `#/data/${r.log.knitId}`), " ", tags(r.log.tags)] : none()),
  );
}
