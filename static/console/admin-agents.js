// Settings › Agents: the table of agents with their live status, and the dialogs to add
// one, edit one, reset a password; enable/disable from the row (protocol §10).
import { t } from "/static/shared/i18n.js";
import { el } from "/static/shared/render.js";
import { avatar } from "./list.js";
import { confirmDialog } from "./dialogs.js";
import { DASH, cell, rowButton, showError, replaceRows, wireDialog, describeAdminError } from "./admin-api.js";

const $ = (id) => document.getElementById(id);
const LIVE_REFRESH_MS = 15_000; // status, load and connections change by themselves

export class AgentsScreen {
  constructor(area) {
    this.area = area;
    this.agents = [];
    this.loaded = false;
    this.editing = null; // the agent being edited, or null when adding
    this.passwordFor = null;
    this.dom = {
      body: $("agents-body"), empty: $("agents-empty"), error: $("agents-error"),
      dialog: $("agent-dialog"), form: $("agent-form"), title: $("agent-dialog-title"),
      name: $("agent-name"), group: $("agent-group"), username: $("agent-username"),
      password: $("agent-password"), role: $("agent-role"), avatar: $("agent-avatar"),
      loginFields: $("agent-login-fields"), groupNote: $("agent-group-note"), formError: $("agent-dialog-error"),
      pwDialog: $("password-dialog"), pwForm: $("password-form"), pwTitle: $("password-dialog-title"),
      pwNote: $("password-note"), pwInput: $("password-new"), pwError: $("password-dialog-error"),
    };
    const d = this.dom;
    $("agents-refresh").addEventListener("click", () => this.load());
    $("agents-add").addEventListener("click", () => this.openAdd());
    d.body.addEventListener("click", (ev) => {
      const b = ev.target.closest("button[data-action]");
      const agent = b && this.agents.find((a) => String(a.admin_id) === b.dataset.id);
      if (!agent) return;
      if (b.dataset.action === "edit") this.openEdit(agent);
      else if (b.dataset.action === "password") this.openPassword(agent);
      else if (b.dataset.action === "toggle") this.toggle(agent);
    });
    d.group.addEventListener("change", () => {
      const a = this.editing;
      d.groupNote.hidden = !a || d.group.value === String(a.group_id);
      d.groupNote.textContent = t(a && Number(a.admin_id) === Number(this.area.app.myId())
        ? "admin.agents.groupNoteSelf" : "admin.agents.groupNote");
    });
    wireDialog(d.dialog, d.form, () => this.save());
    wireDialog(d.pwDialog, d.pwForm, () => this.savePassword());
    setInterval(() => this._liveRefresh(), LIVE_REFRESH_MS);
  }

  async load() {
    showError(this.dom.error, "");
    try {
      const [data] = await Promise.all([this.area.api.get("agents"), this.area.loadGroups()]);
      this.agents = data.agents || [];
      this.loaded = true;
    } catch (err) {
      showError(this.dom.error, describeAdminError(err));
    }
    this.render();
  }

  clear() {
    this.agents = [];
    this.loaded = false;
    this.render();
  }

  render() {
    const { body, empty } = this.dom;
    replaceRows(body, this.agents.map((a) => this._row(a)));
    empty.hidden = !this.loaded || this.agents.length > 0;
  }

  _row(a) {
    const me = Number(a.admin_id) === Number(this.area.app.myId());
    const tr = el("tr");
    tr.dataset.id = a.admin_id;
    if (!a.enabled) tr.className = "is-disabled";

    const picture = avatar(a.name, a.avatar);
    picture.setAttribute("aria-hidden", "true");
    const who = el("span", "who", null, picture, el("span", "who-name", a.name));
    if (me) {
      const hidden = (text) => el("span", "visually-hidden", text);
      who.append(el("span", "tag", null, hidden(" ("), t("admin.agents.you"), hidden(")")));
    }
    const nameCell = el("th", null, null, who);
    nameCell.scope = "row";

    const live = el("span", "live " + a.status, null,
      el("span", "live-dot"), el("span", null, t("status." + a.status)));
    const n = Number(a.connections) || 0;
    if (n > 0) {
      live.append(el("span", "muted", t(n === 1 ? "admin.agents.connection" : "admin.agents.connections", { n })));
    }

    const actions = el("td", "actions");
    actions.append(rowButton(t("admin.edit"), t("admin.agents.editOf", { name: a.name }), "edit", a.admin_id));
    if (a.username != null) {
      const label = t("admin.agents.passwordOf", { name: a.name });
      actions.append(rowButton(t("admin.agents.password"), label, "password", a.admin_id));
    }
    const toggleText = t(a.enabled ? "admin.disable" : "admin.enable");
    const toggleLabel = t(a.enabled ? "admin.agents.disableOf" : "admin.agents.enableOf", { name: a.name });
    actions.append(rowButton(toggleText, toggleLabel, "toggle", a.admin_id, a.enabled ? "danger" : ""));

    tr.append(
      nameCell,
      cell(a.username == null ? DASH : a.username, a.username == null ? "muted" : "mono"),
      cell(this.area.groupName(a.group_id)),
      cell(t("admin.role." + (a.role === "admin" ? "admin" : "agent"))),
      cell(el("span", "pill " + (a.enabled ? "on" : "off"), t(a.enabled ? "admin.enabled" : "admin.disabled"))),
      cell(live),
      cell(t("admin.agents.loadOf", { load: Number(a.load) || 0, capacity: a.capacity ?? DASH }), "num"),
      actions,
    );
    return tr;
  }

  // ---- add and edit -------------------------------------------------------------------
  openAdd() {
    const d = this.dom;
    this.editing = null;
    d.form.reset();
    d.title.textContent = t("admin.agents.add");
    d.loginFields.hidden = false;
    d.groupNote.hidden = true;
    showError(d.formError, "");
    const enabled = this.area.groups.filter((g) => g.enabled);
    this.area.fillGroupSelect(d.group, (enabled[0] || this.area.groups[0] || {}).id);
    d.role.value = "agent";
    d.dialog.showModal();
  }

  openEdit(agent) {
    const d = this.dom;
    this.editing = agent;
    d.form.reset();
    d.title.textContent = t("admin.agents.editOf", { name: agent.name });
    d.loginFields.hidden = true;
    d.groupNote.hidden = true;
    showError(d.formError, "");
    d.name.value = agent.name;
    this.area.fillGroupSelect(d.group, agent.group_id);
    d.role.value = agent.role === "admin" ? "admin" : "agent";
    d.avatar.value = agent.avatar || "";
    d.dialog.showModal();
  }

  async save() {
    const d = this.dom;
    showError(d.formError, "");
    const fields = {
      name: d.name.value.trim(),
      group_id: Number(d.group.value),
      role: d.role.value,
      avatar: d.avatar.value.trim(),
    };
    if (!fields.name) return showError(d.formError, t("admin.agents.nameNeeded"));
    if (!d.group.value) return showError(d.formError, t("admin.agents.groupNeeded"));
    let body;
    if (this.editing) {
      const a = this.editing;
      body = {};
      if (fields.name !== a.name) body.name = fields.name;
      if (fields.group_id !== Number(a.group_id)) body.group_id = fields.group_id;
      if (fields.role !== a.role) body.role = fields.role;
      if (fields.avatar !== (a.avatar || "")) body.avatar = fields.avatar;
      if (!Object.keys(body).length) return d.dialog.close();
    } else {
      const username = d.username.value.trim();
      const password = d.password.value;
      if (!username !== !password) return showError(d.formError, t("admin.agents.together"));
      body = { group_id: fields.group_id, name: fields.name, role: fields.role };
      if (username) Object.assign(body, { username, password });
      if (fields.avatar) body.avatar = fields.avatar;
    }
    try {
      if (this.editing) await this.area.api.patch("agents/" + this.editing.admin_id, body);
      else await this.area.api.post("agents", body);
    } catch (err) {
      return showError(d.formError, describeAdminError(err));
    }
    d.dialog.close();
    this.area.announce(t(this.editing ? "admin.agents.saved" : "admin.agents.added", { name: fields.name }));
    await this.load();
  }

  // ---- password -------------------------------------------------------------------------
  openPassword(agent) {
    const d = this.dom;
    this.passwordFor = agent;
    d.pwForm.reset();
    d.pwTitle.textContent = t("admin.password.title", { name: agent.name });
    const me = Number(agent.admin_id) === Number(this.area.app.myId());
    d.pwNote.textContent = t(me ? "admin.password.noteSelf" : "admin.password.note", { name: agent.name });
    showError(d.pwError, "");
    d.pwDialog.showModal();
  }

  async savePassword() {
    const d = this.dom;
    const agent = this.passwordFor;
    showError(d.pwError, "");
    try {
      await this.area.api.patch("agents/" + agent.admin_id, { password: d.pwInput.value });
    } catch (err) {
      return showError(d.pwError, describeAdminError(err));
    }
    d.pwForm.reset();
    d.pwDialog.close();
    this.area.announce(t("admin.password.done", { name: agent.name }));
    await this.load();
  }

  // ---- enable / disable ------------------------------------------------------------------
  async toggle(agent) {
    const enable = !agent.enabled;
    const me = Number(agent.admin_id) === Number(this.area.app.myId());
    const question = t(me ? "admin.agents.disableSelf" : "admin.agents.disableConfirm", { name: agent.name });
    if (!enable && !(await confirmDialog(question))) return;
    showError(this.dom.error, "");
    try {
      await this.area.api.patch("agents/" + agent.admin_id, { enabled: enable });
    } catch (err) {
      showError(this.dom.error, describeAdminError(err));
      return;
    }
    this.area.announce(t(enable ? "admin.agents.enabledNow" : "admin.agents.disabledNow", { name: agent.name }));
    await this.load();
  }

  async _liveRefresh() {
    const area = this.area;
    if (!area.shown || area.current !== "agents" || document.visibilityState !== "visible") return;
    if (area.dialogs.some((dlg) => dlg.open) || $("confirm-dialog").open) return;
    try {
      const data = await area.api.get("agents");
      this.agents = data.agents || [];
      this.render();
    } catch (err) { /* shown at the next load */ }
  }
}
