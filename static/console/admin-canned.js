// Settings › Canned replies: per group, add / edit / delete (protocol §10 /api/admin/canned).
// Agents use them with "/" in the composer (canned.js, 32860).
import { t } from "/static/shared/i18n.js";
import { el } from "/static/shared/render.js";
import { confirmDialog } from "./dialogs.js";
import { cell, formatWhen, rowButton, showError, replaceRows, wireDialog, describeAdminError } from "./admin-api.js";

const $ = (id) => document.getElementById(id);

export class CannedScreen {
  /** area: the AdminArea; onChanged() tells the composer to load the replies again. */
  constructor(area, onChanged) {
    this.area = area;
    this.onChanged = onChanged || (() => {});
    this.canned = [];
    this.loaded = false;
    this.groupId = null;
    this.editing = null;
    this.dom = {
      body: $("canned-body"), empty: $("canned-empty"), error: $("canned-error"), group: $("canned-group"),
      dialog: $("canned-dialog"), form: $("canned-form"), title: $("canned-dialog-title"),
      shortcut: $("canned-shortcut"), text: $("canned-text"), formError: $("canned-dialog-error"),
    };
    $("canned-refresh").addEventListener("click", () => this.load());
    $("canned-add").addEventListener("click", () => this.openDialog(null));
    this.dom.group.addEventListener("change", () => {
      this.groupId = this.dom.group.value;
      this.loadReplies();
    });
    this.dom.body.addEventListener("click", (ev) => {
      const b = ev.target.closest("button[data-action]");
      const c = b && this.canned.find((x) => String(x.id) === b.dataset.id);
      if (!c) return;
      if (b.dataset.action === "edit") this.openDialog(c);
      else if (b.dataset.action === "delete") this.remove(c);
    });
    wireDialog(this.dom.dialog, this.dom.form, () => this.save());
  }

  /** The groups (for the select), then the chosen group's replies. */
  async load() {
    if (!(await this.area.pickGroup(this))) return;
    await this.loadReplies();
  }

  async loadReplies() {
    showError(this.dom.error, "");
    if (this.groupId == null) {
      this.canned = [];
      this.loaded = true;
      return this.render();
    }
    const group = this.groupId;
    try {
      const data = await this.area.api.get("canned", { group_id: group });
      if (group !== this.groupId) return;
      this.canned = (data.canned || []).slice().sort((a, b) => String(a.shortcut).localeCompare(String(b.shortcut)));
      this.loaded = true;
    } catch (err) {
      showError(this.dom.error, describeAdminError(err));
    }
    this.render();
  }

  clear() {
    this.canned = [];
    this.loaded = false;
    this.groupId = null;
    this.render();
  }

  render() {
    const rows = this.loaded ? this.canned : [];
    replaceRows(this.dom.body, rows.map((c) => this._row(c)));
    this.dom.empty.hidden = !this.loaded || rows.length > 0;
  }

  _row(c) {
    const tr = el("tr");
    const shortcut = el("th", "mono", "/" + c.shortcut);
    shortcut.scope = "row";
    const actions = el("td", "actions");
    actions.append(
      rowButton(t("admin.edit"), t("admin.canned.editOf", { shortcut: c.shortcut }), "edit", c.id),
      rowButton(t("admin.delete"), t("admin.canned.deleteOf", { shortcut: c.shortcut }), "delete", c.id, "danger"),
    );
    tr.append(shortcut, cell(c.text, "canned-cell"), cell(formatWhen(c.updated_at), "nowrap"), actions);
    return tr;
  }

  openDialog(c) {
    const d = this.dom;
    this.editing = c;
    d.form.reset();
    d.title.textContent = c ? t("admin.canned.editOf", { shortcut: c.shortcut }) : t("admin.canned.add");
    d.shortcut.value = c ? c.shortcut : "";
    d.text.value = c ? c.text : "";
    showError(d.formError, "");
    d.dialog.showModal();
  }

  async save() {
    const d = this.dom;
    const shortcut = d.shortcut.value.trim().replace(/^\//, "");
    const text = d.text.value.trim();
    showError(d.formError, "");
    if (!shortcut || /\s/.test(shortcut) || !text) return showError(d.formError, t("admin.canned.needed"));
    try {
      if (this.editing) {
        const body = {};
        if (shortcut !== this.editing.shortcut) body.shortcut = shortcut;
        if (text !== this.editing.text) body.text = text;
        if (Object.keys(body).length) await this.area.api.patch("canned/" + this.editing.id, body);
      } else {
        await this.area.api.post("canned", { group_id: Number(this.groupId), shortcut, text });
      }
    } catch (err) {
      return showError(d.formError, describeAdminError(err));
    }
    d.dialog.close();
    this.area.announce(t(this.editing ? "admin.canned.saved" : "admin.canned.added", { shortcut }));
    this.onChanged();
    await this.loadReplies();
  }

  async remove(c) {
    if (!(await confirmDialog(t("admin.canned.deleteConfirm", { shortcut: c.shortcut })))) return;
    showError(this.dom.error, "");
    try {
      await this.area.api.delete("canned/" + c.id);
    } catch (err) {
      showError(this.dom.error, describeAdminError(err));
      return;
    }
    this.area.announce(t("admin.canned.deleted", { shortcut: c.shortcut }));
    this.onChanged();
    await this.loadReplies();
  }
}
