// The transfer dialog, a confirmation dialog and the suspend/resume toggle.
import { t } from "/static/shared/i18n.js";
import { el } from "/static/shared/render.js";
import { avatar } from "./list.js";
import { describeError } from "./errors.js";

const $ = (id) => document.getElementById(id);

/** Ask a yes/no question in the page's own dialog; resolves true for OK. */
export function confirmDialog(text) {
  const dialog = $("confirm-dialog");
  $("confirm-text").textContent = text;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
  });
}

export class TransferDialog {
  /** app: {client, myId(), onTransferred(gid, aix)} */
  constructor(app) {
    this.app = app;
    this.dialog = $("transfer-dialog");
    this.list = $("agent-list");
    this.none = $("agent-empty");
    this.error = $("transfer-error");
    this.gid = null;
    this.agents = new Map(); // admin_id -> agent_info (online or suspended)
    this.busy = false;
    this.list.addEventListener("click", (ev) => {
      const b = ev.target.closest("button[data-aix]");
      if (b && !b.disabled) this._transfer(Number(b.dataset.aix));
    });
    this.dialog.addEventListener("close", () => { this.gid = null; });
  }

  async open(gid) {
    this.gid = gid;
    this.busy = false;
    this._error("");
    this.agents.clear();
    this.list.replaceChildren(el("li", "list-empty", t("chat.loading")));
    this.none.hidden = true;
    this.dialog.showModal();
    try {
      const data = await this.app.client.request(33000);
      if (this.gid !== gid) return;
      for (const a of data.admin_list || []) this.agents.set(Number(a.admin_id), a);
    } catch (err) {
      if (this.gid === gid) this._error(t("transfer.failed", { reason: describeError(err) }));
    }
    this.render();
  }

  /** 33099: a colleague's status changed. */
  agentChanged(info) {
    const id = Number(info.admin_id);
    if (info.status === "offline") this.agents.delete(id);
    else this.agents.set(id, info);
    if (this.gid != null) this.render();
  }

  render() {
    if (this.gid == null) return;
    const me = this.app.myId();
    const rank = { online: 0, suspended: 1 };
    const others = [...this.agents.values()]
      .filter((a) => Number(a.admin_id) !== me)
      .sort((a, b) => (rank[a.status] ?? 2) - (rank[b.status] ?? 2) || a.load - b.load || a.admin_id - b.admin_id);
    this.list.replaceChildren(...others.map((a) => this._row(a)));
    this.none.hidden = others.length > 0;
  }

  _row(a) {
    const li = el("li");
    const b = el("button", "agent-row");
    b.type = "button";
    b.dataset.aix = a.admin_id;
    b.disabled = a.status !== "online" || this.busy;
    const dot = el("span", "presence-dot " + (a.status === "online" ? "on" : "away"));
    const meta = t("status." + a.status) + " · " + t("transfer.load", { n: Number(a.load) || 0 });
    b.append(avatar(a.name, a.avatar), el("span", "agent-name", a.name), dot, el("span", "agent-meta", meta));
    li.append(b);
    return li;
  }

  async _transfer(aix) {
    const gid = this.gid;
    if (gid == null || this.busy) return;
    this.busy = true;
    this._error("");
    this.render();
    try {
      await this.app.client.request(32400, { gid, aix });
    } catch (err) {
      this.busy = false;
      if (this.gid === gid) {
        this._error(t("transfer.failed", { reason: describeError(err) }));
        this.render();
      }
      return;
    }
    this.busy = false;
    if (this.dialog.open) this.dialog.close();
    this.app.onTransferred(gid, aix);
  }

  _error(text) {
    this.error.textContent = text;
    this.error.hidden = !text;
  }
}

/** The online/suspended button in the top bar (32500). */
export class StatusToggle {
  constructor(app) {
    this.app = app;
    this.button = $("status-toggle");
    this.label = $("status-label");
    this.status = "offline";
    this.button.addEventListener("click", () => this._toggle());
  }

  set(status) {
    this.status = status || "offline";
    this.render();
  }

  render() {
    const s = this.status;
    this.button.classList.toggle("online", s === "online");
    this.button.classList.toggle("suspended", s === "suspended");
    this.label.textContent = t("status." + s);
    this.button.setAttribute("aria-pressed", s === "suspended" ? "true" : "false");
    this.button.title = s === "suspended" ? t("status.toResume") : s === "online" ? t("status.toSuspend") : "";
    this.button.disabled = s === "offline";
  }

  async _toggle() {
    const suspend = this.status !== "suspended";
    this.button.disabled = true;
    try {
      const data = await this.app.client.request(32500, { status: suspend ? 1 : 0 });
      this.set(Number(data.status) === 1 ? "suspended" : "online");
    } catch (err) {
      this.render();
    }
  }
}
