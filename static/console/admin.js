// The Settings area of the console, for admins (docs/protocol.md §10–12): the top bar's
// Settings button, the tabs, and the shared state of the screens (admin-*.js).
import { t, onLanguageChange, translatePage } from "/static/shared/i18n.js";
import { AdminApi, describeAdminError, showError } from "./admin-api.js";
import { AgentsScreen } from "./admin-agents.js";
import { GroupsScreen } from "./admin-groups.js";
import { AuditScreen } from "./admin-audit.js";
import { WebhooksScreen } from "./admin-webhooks.js";
import { ReportsScreen } from "./admin-reports.js";
import { CannedScreen } from "./admin-canned.js";
import { BlocksScreen } from "./admin-blocks.js";
import { HoursScreen } from "./admin-hours.js";

const $ = (id) => document.getElementById(id);
const STATUS_MS = 12_000; // how long a status sentence stays

export class AdminArea {
  /**
   * app: {token(), myId(), groupId(), onSignedOut(message) (the session is over), onLeave() (back
   * to the chats), onCannedChanged(), onBlockLifted(gid)}
   */
  constructor(app) {
    this.app = app;
    this.role = "agent";
    this.shown = false;
    this.current = "agents";
    this.groups = []; // the last GET /api/admin/groups
    this.unread = 0; // unread chat messages, shown on "Back to chats"
    this.button = $("admin-btn");
    this.area = $("admin");
    this.status = $("admin-status");
    this.tabs = [...$("admin-tabs").querySelectorAll("[role=tab]")];
    this.dialogs = ["agent-dialog", "password-dialog", "group-dialog", "webhook-dialog", "secret-dialog",
      "deliveries-dialog", "canned-dialog"].map($);
    this.api = new AdminApi(() => app.token(), {
      onUnauthorized: () => app.onSignedOut(t("login.expired")),
      onForbidden: () => this.setRole("agent"), // no longer an admin: back to the chats
    });
    this.screens = {
      agents: new AgentsScreen(this),
      groups: new GroupsScreen(this),
      audit: new AuditScreen(this),
      webhooks: new WebhooksScreen(this),
      reports: new ReportsScreen(this),
      canned: new CannedScreen(this, () => app.onCannedChanged && app.onCannedChanged()),
      blocks: new BlocksScreen(this, (gid) => app.onBlockLifted && app.onBlockLifted(gid)),
      hours: new HoursScreen(this),
    };
    this.button.addEventListener("click", () => (this.shown ? this.close() : this.open()));
    for (const tab of this.tabs) tab.addEventListener("click", () => this.select(tab.dataset.screen));
    $("admin-tabs").addEventListener("keydown", (ev) => this._tabKey(ev));
    onLanguageChange(() => this.render());
    // The Settings dialogs are in the page only while an admin is signed in: their fields
    // ("Username", "Password", …) must not be confused with the sign-in form's.
    for (const d of this.dialogs) d.remove();
    this._renderTabs();
    this.render();
  }

  /** The role from the 31000 answer: only an admin sees the Settings button. */
  setRole(role) {
    this.role = role === "admin" ? "admin" : "agent";
    this.button.hidden = this.role !== "admin";
    for (const d of this.dialogs) {
      if (this.role === "admin" && !d.isConnected) {
        translatePage(d);
        document.body.append(d);
      }
      if (this.role !== "admin" && d.isConnected) {
        if (d.open) d.close();
        d.remove();
      }
    }
    if (this.role !== "admin" && this.shown) this.close();
  }

  /** The conversation list's unread count changed. */
  setUnread(n) {
    this.unread = Number(n) || 0;
    if (this.shown) this.render();
  }

  /** Signed out: hide everything and forget what was loaded. */
  reset() {
    this.api.forget();
    this.close(true);
    this.setRole("agent");
    this.groups = [];
    this.current = "agents";
    this.announce("");
    for (const s of Object.values(this.screens)) s.clear();
    this._renderTabs();
  }

  open() {
    if (this.role !== "admin") return;
    this.shown = true;
    this.area.hidden = false;
    document.body.classList.add("show-admin");
    this.render();
    this.select(this.current, false);
    $("admin-title").focus({ preventScroll: true });
  }

  close(quiet) {
    const was = this.shown;
    this.shown = false;
    this.area.hidden = true;
    document.body.classList.remove("show-admin");
    this.render();
    if (was && !quiet) {
      this.app.onLeave();
      if (!this.button.hidden) this.button.focus();
    }
  }

  /** Show one screen and (re)load what it shows. */
  select(name, focusTab = true) {
    if (!this.screens[name]) return;
    this.current = name;
    this._renderTabs();
    if (focusTab) this.tabs.find((b) => b.dataset.screen === name).focus();
    this.screens[name].load();
  }

  /** A polite status line ("Carol was added."). */
  announce(text) {
    // Emptied first so that the same sentence twice is announced twice; cleared after a
    // while so that an old sentence is not taken for news.
    clearTimeout(this._statusTimer);
    this.status.textContent = "";
    if (!text) return;
    this._statusTimer = setTimeout(() => {
      this.status.textContent = text;
      this._statusTimer = setTimeout(() => { this.status.textContent = ""; }, STATUS_MS);
    }, 30);
  }

  render() {
    const label = t(this.shown ? "admin.back" : "admin.open");
    const unread = this.shown ? this.unread : 0;
    $("admin-btn-label").textContent = label;
    $("admin-badge").textContent = unread > 99 ? "99+" : String(unread);
    $("admin-badge").hidden = !unread;
    // The text is hidden on a phone: the name is in aria-label.
    this.button.setAttribute("aria-label", unread ? t("admin.backUnread", { n: unread }) : label);
    $("admin-icon-settings").toggleAttribute("hidden", this.shown); // SVG: no .hidden property
    $("admin-icon-chats").toggleAttribute("hidden", !this.shown);
    for (const d of this.dialogs) translatePage(d);
    for (const s of Object.values(this.screens)) s.render();
  }

  // ---- groups, shared by the agents, groups and reports screens ----------------------
  async loadGroups() {
    const data = await this.api.get("groups");
    this.groups = data.groups || [];
    return this.groups;
  }

  groupName(id) {
    const g = this.groups.find((x) => Number(x.id) === Number(id));
    return g ? g.name : "#" + id;
  }

  /** Fill a <select> with the groups (disabled ones marked), keeping `value`. */
  /**
   * For a screen of one group (canned replies, hours): read the groups, keep the screen's
   * group if it still exists, else take the agent's own or the first, and fill the
   * screen's select. False, with the error shown, when the groups cannot be read.
   */
  async pickGroup(screen) {
    showError(screen.dom.error, "");
    try {
      await this.loadGroups();
    } catch (err) {
      showError(screen.dom.error, describeAdminError(err));
      return false;
    }
    if (screen.groupId == null || !this.groups.some((g) => String(g.id) === String(screen.groupId))) {
      const mine = this.app.groupId && this.app.groupId();
      const first = this.groups.find((g) => Number(g.id) === Number(mine)) || this.groups[0];
      screen.groupId = first ? String(first.id) : null;
    }
    this.fillGroupSelect(screen.dom.group, screen.groupId);
    return true;
  }

  fillGroupSelect(select, value, { all = false } = {}) {
    const options = [];
    if (all) options.push(new Option(t("admin.reports.allGroups"), ""));
    for (const g of this.groups) {
      const label = g.enabled ? g.name : t("admin.groups.disabledName", { name: g.name });
      options.push(new Option(label, String(g.id)));
    }
    select.replaceChildren(...options);
    if (value != null && [...select.options].some((o) => o.value === String(value))) select.value = String(value);
  }

  // ---- tabs (WAI-ARIA tabs pattern) ---------------------------------------------------
  _renderTabs() {
    for (const tab of this.tabs) {
      const on = tab.dataset.screen === this.current;
      tab.setAttribute("aria-selected", on ? "true" : "false");
      tab.tabIndex = on ? 0 : -1;
      $(tab.getAttribute("aria-controls")).hidden = !on;
    }
  }

  _tabKey(ev) {
    const i = this.tabs.indexOf(document.activeElement);
    if (i < 0) return;
    const n = this.tabs.length;
    const next = { ArrowRight: i + 1, ArrowDown: i + 1, ArrowLeft: i - 1, ArrowUp: i - 1, Home: 0, End: n - 1 }[ev.key];
    if (next === undefined) return;
    ev.preventDefault();
    this.select(this.tabs[(next + n) % n].dataset.screen);
  }
}
