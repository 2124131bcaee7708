// The router: every view has its own hash URL (#/data, #/data/ID, #/lineage/run/ID, …).
import { token } from "./api.js";
import { dataDetail, planDetail, runDetail } from "./details.js";
import { graphView } from "./graph.js";
import { dataList, planList, runList } from "./lists.js";
import { logView } from "./log.js";
import { errorBox, h } from "./ui.js";

const ID = "([^/?]+)";
const ROUTES = [
  [/^\/data$/, dataList],
  [new RegExp(`^/data/${ID}$`), dataDetail],
  [/^\/plans$/, planList],
  [new RegExp(`^/plans/${ID}$`), planDetail],
  [/^\/runs$/, runList],
  [new RegExp(`^/runs/${ID}$`), runDetail],
  [new RegExp(`^/runs/${ID}/log$`), logView],
  [new RegExp(`^/lineage/(data|run)/${ID}$`), graphView],
  [new RegExp(`^/plangraph/${ID}$`), (ctx, id) => graphView(ctx, "plan", id)],
];

let current = null;
let previous = null;

function parse() {
  const raw = location.hash.replace(/^#/, "") || "/data";
  const at = raw.indexOf("?");
  const path = at < 0 ? raw : raw.slice(0, at);
  return { path, query: new URLSearchParams(at < 0 ? "" : raw.slice(at + 1)) };
}

/** What a view is given: where to draw, its URL, and how to tidy up when the user leaves. */
function context(main, path, query) {
  const cleanups = [];
  const ctx = {
    path,
    query,
    alive: () => current === ctx,
    show: (...nodes) => ctx.alive() && main.replaceChildren(...nodes),
    cleanup: (fn) => cleanups.push(fn),
    stop: () => cleanups.splice(0).forEach((fn) => fn()),
    refresh: () => render(),
    fail: (e) => failed(ctx, e),
  };
  return ctx;
}

async function render() {
  current?.stop();
  const { path, query } = parse();
  const main = document.getElementById("main");
  const ctx = (current = context(main, path, query));
  if (path !== previous) main.replaceChildren(h("p", { class: "muted" }, "Loading…")); // not the last page's buttons
  previous = path;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("on", path.startsWith(`/${a.dataset.tab}`));
  document.getElementById("signout").hidden = !token.get();
  const found = ROUTES.map(([re, view]) => [path.match(re), view]).find(([m]) => m);
  if (!found) return void main.replaceChildren(errorBox(new Error(`no such page: #${path}`)));
  const [match, view] = found;
  try {
    await view(ctx, ...match.slice(1).map(decodeURIComponent));
  } catch (e) {
    failed(ctx, e);
  }
}

function failed(ctx, e) {
  if (!ctx.alive() || e.name === "AbortError") return;
  if (e.status === 401) return signIn(ctx);
  const main = document.getElementById("main");
  main.prepend(errorBox(e));
}

/** The server wants a token: ask for it (kept in this tab's sessionStorage only). */
function signIn(ctx) {
  const input = h("input", { type: "password", name: "token", autocomplete: "current-password", required: true, size: 40 });
  const submit = (e) => {
    e.preventDefault();
    token.set(input.value.trim());
    render();
  };
  const again = token.get() ? h("p", { class: "error", role: "alert" }, "That token was refused.") : null;
  ctx.show(
    h(
      "form",
      { class: "signin box", onsubmit: submit },
      h("h2", {}, "Sign in"),
      h("p", {}, "This Knitfab server wants its API token: the ", h("code", {}, "token"), " of your knitprofile (from the server's handout), or the contents of the file given to ", h("code", {}, "knitfab serve --token-file"), "."),
      again,
      h("label", {}, "Token ", input),
      h("button", { type: "submit", name: "signin" }, "Sign in"),
    ),
  );
  token.clear();
  input.focus();
}

document.getElementById("signout").addEventListener("click", () => (token.clear(), render()));
window.addEventListener("hashchange", render);
render();
