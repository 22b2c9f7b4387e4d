// The Admin API (docs/protocol.md §10) over fetch, with the console's agent token,
// and the small helpers the Settings screens share: errors, times, durations.
import { t, getLanguage } from "/static/shared/i18n.js";
import { el } from "/static/shared/render.js";

/** An answer with a negative code: {status (HTTP), code, message (the server's)}. */
export class AdminError extends Error {
  constructor(status, code, message) {
    super(message || "");
    this.status = status;
    this.code = code;
  }
}

/** A request answered after a sign-out: its answer is dropped. */
const STALE = -2;

export class AdminApi {
  /**
   * getToken() → the agent token; hooks.onUnauthorized(err) for a 401 (the session is
   * over), hooks.onForbidden(err) for a 403 (no longer an admin).
   */
  constructor(getToken, hooks = {}) {
    this.getToken = getToken;
    this.hooks = hooks;
    this.session = 0;
  }

  /** Signed out: answers to requests made until now are dropped (rejected as stale). */
  forget() {
    this.session++;
  }

  get(path, params) { return this.request("GET", path + query(params)); }
  post(path, body) { return this.request("POST", path, body); }
  patch(path, body) { return this.request("PATCH", path, body); }
  put(path, body) { return this.request("PUT", path, body); }
  delete(path) { return this.request("DELETE", path); }

  /** The answer's `data`; throws AdminError. */
  async request(method, path, body) {
    const session = this.session;
    const res = await this._fetch(method, path, body);
    let answer = null;
    try {
      answer = await res.json();
    } catch (e) { /* not JSON: an endpoint this server does not have, a proxy's page */ }
    if (session !== this.session) throw new AdminError(0, STALE, "");
    if (res.ok && answer && answer.code === 200) return answer.data || {};
    throw this._failed(res.status, answer);
  }

  /**
   * Save a file the API answers (the reports' CSV). A plain link cannot carry the
   * Authorization header: fetch it, then hand the browser a Blob URL to download.
   */
  async download(path, params, filename) {
    const session = this.session;
    const res = await this._fetch("GET", path + query(params));
    if (session !== this.session) throw new AdminError(0, STALE, "");
    if (!res.ok) {
      let answer = null;
      try { answer = await res.json(); } catch (e) { /* not JSON */ }
      throw this._failed(res.status, answer);
    }
    const url = URL.createObjectURL(await res.blob());
    const a = el("a");
    a.href = url;
    a.download = filename;
    a.hidden = true;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  }

  async _fetch(method, path, body) {
    const headers = { Authorization: "Bearer " + (this.getToken() || "") };
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    try {
      return await fetch("/api/admin/" + path, init);
    } catch (e) {
      throw new AdminError(0, -1, "");
    }
  }

  _failed(status, answer) {
    const code = answer && typeof answer.code === "number" ? answer.code : -status;
    const err = new AdminError(status, code, answer && typeof answer.message === "string" ? answer.message : "");
    if (status === 401 && this.hooks.onUnauthorized) this.hooks.onUnauthorized(err);
    if (status === 403 && this.hooks.onForbidden) this.hooks.onForbidden(err);
    return err;
  }
}

function query(params) {
  if (!params) return "";
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v != null && v !== "") q.set(k, String(v));
  const s = q.toString();
  return s ? "?" + s : "";
}

const LEADS = {
  "-1": "admin.err.network",
  "-40000": "admin.err.bad",
  "-40001": "admin.err.auth",
  "-40003": "admin.err.forbidden",
  "-40004": "admin.err.missing",
  "-40009": "admin.err.conflict",
  "-10005": "admin.err.busy",
  "-10029": "admin.err.rate",
};

/** What went wrong, for the admin: a translated lead and the server's own message. */
export function describeAdminError(err) {
  if (!(err instanceof AdminError)) return t("admin.err.unexpected");
  if (err.code === STALE) return "";
  const lead = LEADS[String(err.code)];
  if (!lead) {
    const generic = t("admin.err.http", { status: err.status });
    return err.message ? generic + t("admin.err.sep") + err.message : generic;
  }
  return err.message ? t(lead) + t("admin.err.sep") + err.message : t(lead);
}

// ---- formatting ---------------------------------------------------------------

export const DASH = "—";

/** A full date and time (ms since the epoch), or "—". */
export function formatWhen(ms) {
  if (ms == null || ms === "" || !Number(ms)) return DASH;
  return new Date(Number(ms)).toLocaleString(getLanguage(), {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
}

/** Seconds as "1 min 20 s", "2 h 5 min", "45 s"; null as "—". */
export function formatDuration(seconds) {
  if (seconds == null || seconds === "" || !Number.isFinite(Number(seconds))) return DASH;
  let s = Math.round(Number(seconds));
  if (s < 60) return t("admin.dur.s", { s });
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  s %= 60;
  if (d) return h ? t("admin.dur.dh", { d, h }) : t("admin.dur.d", { d });
  if (h) return m ? t("admin.dur.hm", { h, m }) : t("admin.dur.h", { h });
  return s ? t("admin.dur.ms", { m, s }) : t("admin.dur.m", { m });
}

/** A count (null as "—"), grouped the reader's way. */
export function formatCount(n) {
  if (n == null || n === "" || !Number.isFinite(Number(n))) return DASH;
  return Number(n).toLocaleString(getLanguage());
}

/** A <td> with text (or a node); `cls` optional. */
export function cell(content, cls) {
  const td = el("td", cls);
  if (content instanceof Node) td.append(content);
  else td.textContent = content == null ? "" : String(content);
  return td;
}

/** A small button for a table row; its accessible name names the row's subject. */
export function rowButton(text, label, action, id, cls) {
  const b = el("button", "small " + (cls || ""), text);
  b.type = "button";
  b.dataset.action = action;
  b.dataset.id = String(id);
  if (label && label !== text) b.setAttribute("aria-label", label);
  return b;
}

/** Show or hide a form's error line. */
export function showError(node, text) {
  node.textContent = text || "";
  node.hidden = !text;
}

/**
 * Re-render a table body, keeping keyboard focus on the same row button
 * (matched by data-action and data-id) so a refresh does not throw the user out.
 */
export function replaceRows(tbody, rows) {
  const active = document.activeElement;
  const key = active && tbody.contains(active) && active.dataset.action
    ? [active.dataset.action, active.dataset.id] : null;
  tbody.replaceChildren(...rows);
  if (key) {
    const again = [...tbody.querySelectorAll("button[data-action]")]
      .find((b) => b.dataset.action === key[0] && b.dataset.id === key[1]);
    if (again) again.focus();
  }
}

/** Wire a <dialog> with a form: Cancel buttons ([data-close]) close it; submit runs `onSubmit`. */
export function wireDialog(dialog, form, onSubmit) {
  for (const b of dialog.querySelectorAll("[data-close]")) b.addEventListener("click", () => dialog.close());
  let busy = false;
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (busy) return;
    busy = true;
    const buttons = [...form.querySelectorAll("button[type=submit]")];
    for (const b of buttons) b.disabled = true;
    try {
      await onSubmit();
    } finally {
      busy = false;
      for (const b of buttons) b.disabled = false;
    }
  });
}
