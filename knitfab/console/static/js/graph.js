// Lineage and plan graphs: Graphviz's SVG of the same DOT as `knit data lineage` and `knit plan
// graph`, from one request (/api/x/lineage, /api/x/plangraph). Clicking a node opens its detail.
import { api } from "./api.js";
import { dataDetail, planDetail, runDetail } from "./details.js";
import { errorBox, h, shortId } from "./ui.js";

const DEPTHS = ["0", "1", "2", "3", "5", "10", "all"];
const OPEN = { d: ["data", dataDetail], r: ["runs", runDetail], p: ["plans", planDetail] };

/** ``#/lineage/data/ID``, ``#/lineage/run/ID`` (whole graph, or ?up=N&down=N) and ``#/plangraph/ID``. */
export async function graphView(ctx, kind, id) {
  const plan = kind === "plan";
  const q = ctx.query;
  const whole = !plan && !q.has("up") && !q.has("down");
  const params = plan ? { plan: id, up: q.get("up") || "3", down: q.get("down") || "3" } : { [kind]: id, up: q.get("up"), down: q.get("down") };
  const panel = h("aside", { class: "panel", hidden: true });
  const canvas = h("div", { class: "canvas" }, h("p", { class: "muted" }, "Drawing…"));
  const title = plan ? "Plan graph of " : kind === "data" ? "Lineage of Data " : "Lineage of run ";
  ctx.show(h("h2", {}, title, shortId(id, `#/${plan ? "plans" : kind === "run" ? "runs" : "data"}/${id}`)), controls(ctx, kind, id, whole), h("div", { class: "graph" }, canvas, panel));
  const svg = await api.graph(plan ? "plangraph" : "lineage", params);
  if (!ctx.alive()) return;
  const doc = new DOMParser().parseFromString(svg, "image/svg+xml").documentElement;
  canvas.replaceChildren(document.importNode(doc, true));
  for (const node of canvas.querySelectorAll("g.node")) clickable(ctx, node, panel);
  zoom(canvas);
}

function controls(ctx, kind, id, whole) {
  if (kind === "run") return h("p", { class: "muted" }, "The whole connected graph of Data and runs around this run.");
  const base = kind === "plan" ? `#/plangraph/${id}` : `#/lineage/data/${id}`;
  const fallback = kind === "plan" ? "3" : "all";
  const pick = (name) => h("select", { name }, DEPTHS.map((d) => h("option", { value: d, selected: (ctx.query.get(name) || fallback) === d }, d === "all" ? "all" : `${d} steps`)));
  const up = pick("up");
  const down = pick("down");
  const go = (e) => (e.preventDefault(), (location.hash = `${base}?up=${up.value}&down=${down.value}`));
  const extra = kind === "data" ? [h("a", { href: base, class: whole ? "button on" : "button", name: "whole" }, "Whole connected graph"), h("a", { href: `${base}?up=0&down=all`, class: "button", name: "made-from" }, "Everything made from this")] : [];
  return h("form", { class: "toolbar depth", onsubmit: go }, h("label", {}, "Upstream ", up), h("label", {}, " Downstream ", down), h("button", { type: "submit", name: "depth" }, "Draw"), extra);
}

function clickable(ctx, node, panel) {
  const name = node.querySelector("title")?.textContent || "";
  const found = OPEN[name[0]];
  if (!found || name.includes("@")) return; // plan entry and exit points are not items
  const [route, detail] = found;
  const id = name.slice(1);
  node.classList.add("clickable");
  node.setAttribute("data-id", id);
  node.addEventListener("click", () => openPanel(ctx, panel, route, detail, id));
}

function openPanel(ctx, panel, route, detail, id) {
  const body = h("div");
  const close = () => (panel.hidden = true);
  panel.replaceChildren(h("div", { class: "panel-head" }, h("a", { href: `#/${route}/${id}`, class: "button" }, "Open"), h("button", { name: "close-panel", onclick: close }, "Close (Esc)")), body);
  panel.hidden = false;
  const sub = { ...ctx, show: (...nodes) => body.replaceChildren(...nodes), refresh: () => openPanel(ctx, panel, route, detail, id) };
  detail(sub, id).catch((e) => body.replaceChildren(errorBox(e)));
  const esc = (e) => e.key === "Escape" && (close(), document.removeEventListener("keydown", esc));
  document.addEventListener("keydown", esc);
  ctx.cleanup(() => document.removeEventListener("keydown", esc));
}

function zoom(canvas) {
  const svg = canvas.querySelector("svg");
  if (!svg) return;
  const [w, hgt] = [svg.width.baseVal.value, svg.height.baseVal.value];
  let scale = 1;
  const set = (s) => {
    scale = Math.min(4, Math.max(0.2, s));
    svg.setAttribute("width", w * scale);
    svg.setAttribute("height", hgt * scale);
  };
  const bar = h("div", { class: "zoom" }, h("button", { name: "zoom-in", onclick: () => set(scale * 1.25) }, "+"), h("button", { name: "zoom-out", onclick: () => set(scale / 1.25) }, "−"), h("button", { name: "zoom-fit", onclick: () => set(Math.min(1, canvas.clientWidth / w)) }, "Fit"));
  canvas.prepend(bar);
  if (w > canvas.clientWidth) set(Math.max(0.5, canvas.clientWidth / w)); // a wide graph starts fitted
}
