// Small DOM helpers: elements are built, never parsed from strings, so no text is ever markup.

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** A Knit ID, run ID or plan ID: its first 8 characters, linked, with a copy button. */
export function shortId(id, href) {
  const label = id.length > 12 ? `${id.slice(0, 8)}…` : id;
  const copy = h("button", { class: "copy", title: `copy ${id}`, "data-copy": id, onclick: (e) => copyText(e, id) }, "copy");
  const text = href ? h("a", { href, class: "id", title: id }, label) : h("code", { class: "id", title: id }, label);
  return h("span", { class: "idbox" }, text, copy);
}

async function copyText(event, text) {
  event.preventDefault();
  event.stopPropagation();
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const area = h("textarea", {}, text); // without a secure context: the old way
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  event.target.textContent = "copied";
  setTimeout(() => (event.target.textContent = "copy"), 1200);
}

const pad = (n, w = 2) => String(n).padStart(w, "0");

/** A timestamp in the viewer's zone; its UTC value on hover. */
export function time(stamp) {
  const t = new Date(stamp);
  if (Number.isNaN(t.getTime())) return h("span", {}, stamp);
  const local = `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())} ${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}`;
  return h("time", { datetime: stamp, title: `${t.toISOString()} (UTC)` }, local);
}

export function status(value) {
  return h("span", { class: `status s-${value}` }, value);
}

/** Tag chips; knit#timestamp in local time. ``onRemove`` adds a remove button to user tags. */
export function tags(list, onRemove) {
  return h("span", { class: "tags" }, (list || []).map((tag) => chip(tag, onRemove)));
}

function chip(tag, onRemove) {
  const at = tag.indexOf(":");
  const [key, value] = [tag.slice(0, at), tag.slice(at + 1)];
  const system = key.startsWith("knit#");
  if (key === "knit#id") return null;
  const shown = key === "knit#timestamp" ? time(value) : value;
  const remove = !system && onRemove ? h("button", { class: "x", title: `remove ${tag}`, onclick: () => onRemove(tag) }, "×") : null;
  return h("span", { class: system ? "tag system" : "tag" }, h("b", {}, key), ":", shown, remove);
}

export function planTitle(plan) {
  return plan.image ? plan.image : plan.name || plan.planId;
}

export function field(label, ...value) {
  return [h("dt", {}, label), h("dd", {}, ...value)];
}

export function section(title, ...children) {
  return h("section", { class: "box" }, h("h3", {}, title), ...children);
}

export function errorBox(e) {
  return h("p", { class: "error", role: "alert" }, e.message || String(e));
}

export const none = () => h("span", { class: "muted" }, "none");
