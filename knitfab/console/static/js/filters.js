// Filter forms of the three lists. Filters live in the URL (#/data?tag=a:b&since=...), so a
// filtered list is a link; a form only rewrites the hash.
import { h } from "./ui.js";

export const STATUSES = ["deactivated", "waiting", "ready", "starting", "running", "completing", "aborting", "done", "failed"];

/** A list of tags as removable chips, with a text box that takes only KEY:VALUE. */
export function tagInput(name, label, values) {
  const list = [...values];
  const chips = h("span", { class: "tags" });
  const text = h("input", { type: "text", name: `${name}-new`, placeholder: "key:value", size: 18 });
  const hint = h("span", { class: "hint" });
  const draw = () =>
    chips.replaceChildren(
      ...list.map((tag, n) => h("span", { class: "tag" }, tag, h("button", { type: "button", class: "x", title: `remove ${tag}`, onclick: () => (list.splice(n, 1), draw()) }, "×"))),
    );
  const add = () => {
    const tag = text.value.trim();
    if (!tag) return true;
    if (!tag.includes(":")) return !(hint.textContent = "a tag is KEY:VALUE");
    if (!list.includes(tag)) list.push(tag);
    text.value = hint.textContent = "";
    draw();
    return true;
  };
  text.addEventListener("keydown", (e) => e.key === "Enter" && (e.preventDefault(), add()));
  draw();
  const node = h("label", { class: "filter" }, label, chips, text, h("button", { type: "button", onclick: add, name: `${name}-add` }, "Add"), hint);
  return { node, name, values: () => (add() ? list : null) };
}

const pad = (n) => String(n).padStart(2, "0");

function localInput(iso) {
  if (!iso) return "";
  const t = new Date(iso);
  return `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())}T${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}`;
}

/** "Since" (the viewer's local time) and "to … later" (a duration like 1h30m, only with since). */
export function windowInput(query) {
  const since = h("input", { type: "datetime-local", step: 1, name: "since", value: localInput(query.get("since")) });
  const duration = h("input", { type: "text", name: "duration", placeholder: "e.g. 1h30m", size: 9, value: query.get("duration") || "" });
  const sync = () => (duration.disabled = !since.value);
  since.addEventListener("input", sync);
  sync();
  const node = h("span", { class: "filter" }, h("label", {}, "Since ", since), h("label", {}, " to ", duration, " later"));
  const values = () => {
    const out = {};
    if (since.value) out.since = new Date(since.value).toISOString();
    if (since.value && duration.value.trim()) out.duration = duration.value.trim();
    return out;
  };
  return { node, values };
}

export function textInput(name, label, value, placeholder = "") {
  const input = h("input", { type: "text", name, value: value || "", placeholder, size: 24 });
  return { node: h("label", { class: "filter" }, label, " ", input), values: () => ({ [name]: input.value.trim() }) };
}

export function statusInput(chosen) {
  const boxes = STATUSES.map((s) => h("input", { type: "checkbox", name: "status", value: s, checked: chosen.includes(s) }));
  const node = h("fieldset", { class: "filter statuses" }, h("legend", {}, "Status"), STATUSES.map((s, n) => h("label", { class: `status s-${s}` }, boxes[n], s)));
  return { node, values: () => ({ status: boxes.filter((b) => b.checked).map((b) => b.value).join(",") }) };
}

export function activeInput(value) {
  const select = h("select", { name: "active" }, [["", "Any"], ["true", "Active"], ["false", "Inactive"]].map(([v, t]) => h("option", { value: v, selected: v === (value || "") }, t)));
  return { node: h("label", { class: "filter" }, "Active status ", select), values: () => ({ active: select.value }) };
}

/** The form: Apply writes the filters into the hash, Clear removes them. */
export function filterForm(base, query, inputs) {
  const apply = (e) => {
    e.preventDefault();
    const params = new URLSearchParams();
    for (const input of inputs) {
      const got = input.values();
      if (got === null) return; // a bad value: its hint says why
      const entries = Array.isArray(got) ? got.map((v) => [input.name, v]) : Object.entries(got);
      for (const [k, v] of entries) if (v) params.append(k, v);
    }
    location.hash = `${base}?${params}`;
  };
  const open = [...query.keys()].some((k) => k !== "page");
  return h(
    "details",
    { class: "filters", open },
    h("summary", {}, "Filters"),
    h("form", { onsubmit: apply }, inputs.map((i) => i.node), h("div", { class: "buttons" }, h("button", { type: "submit", name: "apply" }, "Apply"), h("button", { type: "button", name: "clear", onclick: () => (location.hash = base) }, "Clear"))),
  );
}
