// Settings › Audit log: every change, newest first, with "older" paging (protocol §10).
import { t } from "/static/shared/i18n.js";
import { el } from "/static/shared/render.js";
import { DASH, cell, formatWhen, showError, describeAdminError } from "./admin-api.js";

const $ = (id) => document.getElementById(id);
const PAGE = 50;

/** Who made the change: the admin's name, "command line" or "demo". */
export function auditActor(entry) {
  if (entry.via === "cli") return t("admin.audit.cli");
  if (entry.via === "demo") return t("admin.audit.demo");
  if (entry.actor_name) return entry.actor_name;
  return entry.actor_id != null ? "#" + entry.actor_id : DASH;
}

function detailValue(key, v, area) {
  if (v === true) return t("admin.yes");
  if (v === false) return t("admin.no");
  if (v === null) return DASH;
  if (v === "") return t("admin.audit.empty");
  if (key === "group_id" && area.groups.length) return area.groupName(v) + " (#" + v + ")";
  if (typeof v === "string") return v;
  return JSON.stringify(v);
}

/** The fields changed, as "key: value" lines (all text, never markup). */
function renderDetail(detail, area) {
  if (detail == null || detail === "") return DASH;
  if (typeof detail !== "object") return String(detail);
  const keys = Object.keys(detail);
  if (!keys.length) return DASH;
  const ul = el("ul", "kv");
  for (const k of keys) {
    ul.append(el("li", null, null, el("span", "k", k), el("span", "v", detailValue(k, detail[k], area))));
  }
  return ul;
}

export class AuditScreen {
  constructor(area) {
    this.area = area;
    this.entries = [];
    this.next = null;
    this.loaded = false;
    this.dom = { body: $("audit-body"), empty: $("audit-empty"), error: $("audit-error"), older: $("audit-older") };
    $("audit-refresh").addEventListener("click", () => this.load());
    this.dom.older.addEventListener("click", () => this.loadOlder());
  }

  async load() {
    showError(this.dom.error, "");
    try {
      const [data] = await Promise.all([this.area.api.get("audit", { limit: PAGE }), this.area.loadGroups()]);
      this.entries = data.entries || [];
      this.next = data.next_before ?? null;
      this.loaded = true;
    } catch (err) {
      showError(this.dom.error, describeAdminError(err));
    }
    this.render();
  }

  async loadOlder() {
    if (this.next == null) return;
    const older = this.dom.older;
    older.disabled = true;
    showError(this.dom.error, "");
    try {
      const data = await this.area.api.get("audit", { limit: PAGE, before: this.next });
      const got = data.entries || [];
      const seen = new Set(this.entries.map((e) => e.id));
      this.entries.push(...got.filter((e) => !seen.has(e.id)));
      this.next = data.next_before ?? null;
      this.area.announce(t("admin.audit.more", { n: got.length }));
    } catch (err) {
      showError(this.dom.error, describeAdminError(err));
    }
    older.disabled = false;
    this.render();
    if (this.next == null && document.activeElement === older) $("audit-refresh").focus();
  }

  clear() {
    this.entries = [];
    this.next = null;
    this.loaded = false;
    this.render();
  }

  render() {
    this.dom.body.replaceChildren(...this.entries.map((e) => this._row(e)));
    this.dom.empty.hidden = !this.loaded || this.entries.length > 0;
    this.dom.older.hidden = this.next == null;
  }

  _row(e) {
    const key = "admin.action." + e.action;
    const label = t(key);
    const what = el("div", null, null, el("span", "what", label === key ? String(e.action) : label));
    if (e.target_type) {
      let target = t("admin.target." + e.target_type, { id: e.target_id });
      if (target.startsWith("admin.target.")) target = e.target_type + " #" + e.target_id; // a type unknown here
      what.append(el("span", "muted block", target));
    }
    const when = el("time", null, formatWhen(e.at));
    if (e.at) when.dateTime = new Date(Number(e.at)).toISOString();
    return el("tr", null, null,
      cell(when, "nowrap"),
      cell(auditActor(e), e.via === "admin" ? "" : "muted"),
      cell(what),
      cell(renderDetail(e.detail, this.area), "detail"),
    );
  }
}
