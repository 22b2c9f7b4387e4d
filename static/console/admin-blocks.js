// Settings › Blocked visitors (禁言): the blocks of the installation and "Lift"
// (protocol §10 GET /api/admin/blocks, DELETE /api/admin/blocks/<gid>).
import { t } from "/static/shared/i18n.js";
import { el } from "/static/shared/render.js";
import { confirmDialog } from "./dialogs.js";
import { cell, formatWhen, rowButton, showError, replaceRows, describeAdminError } from "./admin-api.js";

const $ = (id) => document.getElementById(id);

function visitorName(b) {
  const name = b.name && String(b.name).trim();
  return name || t("list.visitor", { gid: b.gid });
}

export class BlocksScreen {
  /** area: the AdminArea; onLifted(gid) tells the chat pane. */
  constructor(area, onLifted) {
    this.area = area;
    this.onLifted = onLifted || (() => {});
    this.blocks = [];
    this.loaded = false;
    this.dom = { body: $("blocks-body"), empty: $("blocks-empty"), error: $("blocks-error") };
    $("blocks-refresh").addEventListener("click", () => this.load());
    this.dom.body.addEventListener("click", (ev) => {
      const b = ev.target.closest("button[data-action=lift]");
      const block = b && this.blocks.find((x) => String(x.gid) === b.dataset.id);
      if (block) this.lift(block);
    });
  }

  async load() {
    showError(this.dom.error, "");
    try {
      const [data] = await Promise.all([this.area.api.get("blocks"), this.area.loadGroups().catch(() => null)]);
      this.blocks = (data.blocks || []).slice().sort((a, b) => (Number(b.blocked_at) || 0) - (Number(a.blocked_at) || 0));
      this.loaded = true;
    } catch (err) {
      showError(this.dom.error, describeAdminError(err));
    }
    this.render();
  }

  clear() {
    this.blocks = [];
    this.loaded = false;
    this.render();
  }

  render() {
    const rows = this.loaded ? this.blocks : [];
    replaceRows(this.dom.body, rows.map((b) => this._row(b)));
    this.dom.empty.hidden = !this.loaded || rows.length > 0;
  }

  _row(b) {
    const tr = el("tr");
    const name = visitorName(b);
    const who = el("th", null, name);
    who.scope = "row";
    const actions = el("td", "actions");
    actions.append(rowButton(t("admin.blocks.lift"), t("admin.blocks.liftOf", { name }), "lift", b.gid));
    tr.append(who, cell(this.area.groupName(b.group_id)), cell(formatWhen(b.blocked_at), "nowrap"),
      cell(b.blocked_by_name || (b.blocked_by != null ? "#" + b.blocked_by : "—")), actions);
    return tr;
  }

  async lift(block) {
    const name = visitorName(block);
    if (!(await confirmDialog(t("admin.blocks.liftConfirm", { name })))) return;
    showError(this.dom.error, "");
    try {
      await this.area.api.delete("blocks/" + block.gid);
    } catch (err) {
      showError(this.dom.error, describeAdminError(err));
      return;
    }
    this.area.announce(t("admin.blocks.lifted", { name }));
    this.onLifted(Number(block.gid));
    await this.load();
  }
}
