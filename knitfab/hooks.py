"""Lifecycle hooks (Knitfab §10.1): the operator's URLs told of every status change the engine makes.

For each step the engine takes on a run (``waiting → ready``, ``ready → starting``,
``starting → running``, ``→ completing``, ``→ aborting``, ``completing → done``,
``aborting → failed``), ``before_change`` POSTs the run's ``RunDetail`` JSON, as it is just
before the change, to every *before* URL in order. Any answer but 2xx, a transport error or a
timeout refuses the step: the engine leaves the run as it is and tries the step again on a later
tick, so before-hooks are called at least once per change. After the change, ``after_change``
POSTs the updated ``RunDetail`` to every *after* URL; their answers are ignored (at most once).
Changes users make (abort, stop, retry, delete, plan activation) and uploads call no hooks.

The answer of a before-hook to ``ready → starting`` may inject environment variables into the
run's worker: a body ``{"knitfabExtension": {"env": {"NAME": "value"}}}`` with the media type
``application/json``; later hooks override earlier ones' names.

A hook that does not answer within ``timeout`` seconds counts as down. A down URL is not called
again for a back-off time (doubling from 1 s up to a minute), so one dead hook delays the steps it
guards without slowing the engine's other work to the timeout on every tick.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import requests

from .api import render
from .status import ALLOWED, RunStatus
from .store import runs
from .store.db import Store

log = logging.getLogger("knitfab.hooks")
S = RunStatus
FINISHING = {S.COMPLETING: S.DONE, S.ABORTING: S.FAILED}
MAX_BACKOFF = 60.0


@dataclass
class Hooks:
    """The configured hook URLs; with none, every call is free (no query, no request)."""

    before: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    timeout: float = 10.0
    _down: dict[str, tuple[float, float]] = field(default_factory=dict)  # url -> (until, back-off)
    _http: requests.Session = field(default_factory=requests.Session)

    def before_change(self, store: Store, run_id: str, new: RunStatus | None = None) -> dict[str, str] | None:
        """Call the before-hooks for moving ``run_id`` to ``new`` (None: the step finishing takes).
        The environment they inject, or None when one refused: the step must wait."""
        if not self.before:
            return {}
        current = runs.status_of(store, run_id)
        target = FINISHING.get(current) if new is None else new
        if target is None or target not in ALLOWED[current]:
            return {}  # no change will happen (a running run watched again): nothing to announce
        detail = render.run(runs.show_run(store, run_id))
        env: dict[str, str] = {}
        for url in self.before:
            answer = self._post(url, detail)
            if answer is None or not answer.ok:
                log.warning("before-hook %s refused run %s → %s: the step waits", url, run_id, target.value)
                return None
            if target == S.STARTING:
                env.update(injected_env(answer, url))
        return env

    def after_change(self, store: Store, run_id: str) -> None:
        """Tell the after-hooks of the run as it is now; their answers do not matter."""
        if not self.after:
            return
        detail = render.run(runs.show_run(store, run_id))
        for url in self.after:
            self._post(url, detail)

    def _post(self, url: str, detail: dict) -> requests.Response | None:
        until, backoff = self._down.get(url, (0.0, 0.0))
        if time.monotonic() < until:
            return None
        try:
            answer = self._http.post(url, json=detail, timeout=self.timeout, allow_redirects=False)
        except requests.RequestException as e:
            backoff = min(max(backoff * 2, 1.0), MAX_BACKOFF)
            self._down[url] = (time.monotonic() + backoff, backoff)
            log.warning("hook %s is down (%s): not called again for %.0f s", url, type(e).__name__, backoff)
            return None
        self._down.pop(url, None)
        return answer


def injected_env(answer: requests.Response, url: str) -> dict[str, str]:
    """``knitfabExtension.env`` of a before-hook's answer, when it is JSON of that shape."""
    if answer.headers.get("Content-Type", "").split(";")[0].strip().lower() != "application/json":
        return {}
    try:
        env = answer.json().get("knitfabExtension", {}).get("env", {})
    except (ValueError, AttributeError):
        log.warning("before-hook %s answered JSON that is not {knitfabExtension: {env: {...}}}", url)
        return {}
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        log.warning("before-hook %s: knitfabExtension.env must map names to strings; ignored", url)
        return {}
    return {str(name): value for name, value in env.items()}


def config_fields(doc: dict | None) -> dict:
    """``Config`` fields from ``hooks: {lifecycle-hooks: {before: [URL...], after: [URL...],
    timeout: seconds}}``, the shape of Knitfab's Helm values (``timeout`` is ours)."""
    section = ((doc or {}).get("hooks") or {}).get("lifecycle-hooks") or {}
    if not isinstance(section, dict):
        raise ValueError("hooks.lifecycle-hooks must be a mapping with before and after")
    timeout = section.get("timeout", 10.0)
    if not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError(f"hooks.lifecycle-hooks.timeout must be a positive number of seconds: {timeout!r}")
    before, after = _urls(section.get("before"), "before"), _urls(section.get("after"), "after")
    return {"hooks_before": before, "hooks_after": after, "hook_timeout": float(timeout)}


def _urls(value: object, name: str) -> list[str]:
    urls = value if isinstance(value, list) else [] if value is None else None
    if urls is None or not all(isinstance(u, str) and u.startswith(("http://", "https://")) for u in urls):
        raise ValueError(f"hooks.lifecycle-hooks.{name} must be a list of http(s) URLs: {value!r}")
    return list(urls)
