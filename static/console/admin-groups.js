// Settings › Groups: list, add, rename, enable/disable (protocol §10).
import { t } from "/static/shared/i18n.js";
import { el } from "/static/shared/render.js";
import { confirmDialog } from "./dialogs.js";
import { cell, formatWhen, rowButton, showError, replaceRows, wireDialog, describeAdminError } from "./admin-api.js";

const $ = (id) => document.getElementById(id);

export class GroupsScreen {
  constructor(area) {
    this.area = area;
    this.loaded = false;
    this.editing = null; // the group being renamed, or null when adding
    this.dom = {
      body: $("groups-body"), empty: $("groups-empty"), error: $("groups-error"),
      dialog: $("group-dialog"), form: $("group-form"), title: $("group-dialog-title"),
      name: $("group-name"), formError: $("group-dialog-error"),
    };
    $("groups-refresh").addEventListener("click", () => this.load());
    $("groups-add").addEventListener("click", () => this.openDialog(null));
    this.dom.body.addEventListener("click", (ev) => {
      const b = ev.target.closest("button[data-action]");
      const group = b && this.area.groups.find((g) => String(g.id) === b.dataset.id);
      if (!group) return;
      if (b.dataset.action === "rename") this.openDialog(group);
      else if (b.dataset.action === "toggle") this.toggle(group);
    });
    wireDialog(this.dom.dialog, this.dom.form, () => this.save());
  }

  async load() {
    showError(this.dom.error, "");
    try {
      await this.area.loadGroups();
      this.loaded = true;
    } catch (err) {
      showError(this.dom.error, describeAdminError(err));
    }
    this.render();
  }

  clear() {
    this.loaded = false;
    this.render();
  }

  render() {
    const groups = this.loaded ? this.area.groups : [];
    replaceRows(this.dom.body, groups.map((g) => this._row(g)));
    this.dom.empty.hidden = !this.loaded || groups.length > 0;
  }

  _row(g) {
    const tr = el("tr");
    if (!g.enabled) tr.className = "is-disabled";
    const name = el("th", null, g.name);
    name.scope = "row";
    const actions = el("td", "actions");
    actions.append(
      rowButton(t("admin.groups.rename"), t("admin.groups.renameOf", { name: g.name }), "rename", g.id),
      rowButton(t(g.enabled ? "admin.disable" : "admin.enable"),
        t(g.enabled ? "admin.groups.disableOf" : "admin.groups.enableOf", { name: g.name }),
        "toggle", g.id, g.enabled ? "danger" : ""),
    );
    tr.append(
      cell(g.id, "num muted"),
      name,
      cell(g.agents ?? 0, "num"),
      cell(el("span", "pill " + (g.enabled ? "on" : "off"), t(g.enabled ? "admin.enabled" : "admin.disabled"))),
      cell(formatWhen(g.created_at), "nowrap"),
      actions,
    );
    return tr;
  }

  openDialog(group) {
    const d = this.dom;
    this.editing = group;
    d.form.reset();
    d.title.textContent = group ? t("admin.groups.renameOf", { name: group.name }) : t("admin.groups.add");
    d.name.value = group ? group.name : "";
    showError(d.formError, "");
    d.dialog.showModal();
  }

  async save() {
    const d = this.dom;
    const name = d.name.value.trim();
    showError(d.formError, "");
    if (!name) return showError(d.formError, t("admin.groups.nameNeeded"));
    try {
      if (this.editing) {
        if (name !== this.editing.name) await this.area.api.patch("groups/" + this.editing.id, { name });
      } else {
        await this.area.api.post("groups", { name });
      }
    } catch (err) {
      return showError(d.formError, describeAdminError(err));
    }
    d.dialog.close();
    this.area.announce(t(this.editing ? "admin.groups.renamed" : "admin.groups.added", { name }));
    await this.load();
  }

  async toggle(group) {
    const enable = !group.enabled;
    if (!enable && !(await confirmDialog(t("admin.groups.disableConfirm", { name: group.name })))) return;
    showError(this.dom.error, "");
    try {
      await this.area.api.patch("groups/" + group.id, { enabled: enable });
    } catch (err) {
      showError(this.dom.error, describeAdminError(err));
      return;
    }
    this.area.announce(t(enable ? "admin.groups.enabledNow" : "admin.groups.disabledNow", { name: group.name }));
    await this.load();
  }
}
