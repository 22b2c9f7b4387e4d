// Settings › Webhooks: list, add (the secret is shown once), delete, and each webhook's
// last deliveries (protocol §10, §11).
import { t } from "/static/shared/i18n.js";
import { el } from "/static/shared/render.js";
import { confirmDialog } from "./dialogs.js";
import {
  DASH, cell, formatWhen, formatCount, rowButton, showError, replaceRows, wireDialog, describeAdminError,
} from "./admin-api.js";

const $ = (id) => document.getElementById(id);
export const EVENTS = ["conversation.created", "message.created", "conversation.assigned",
  "conversation.transferred", "conversation.ended", "conversation.rated", "visitor.left_message"];

/** "delivered · HTTP 200 · 12:05:09" for a delivery, or "—". */
function deliverySummary(d) {
  if (!d) return DASH;
  const parts = [t("admin.delivery." + d.state)];
  if (d.last_status != null) parts.push(t("admin.deliveries.http", { status: d.last_status }));
  else if (d.last_error) parts.push(String(d.last_error).slice(0, 80));
  parts.push(formatWhen(d.last_attempt_at || d.created_at));
  return parts.join(" · ");
}

export class WebhooksScreen {
  constructor(area) {
    this.area = area;
    this.webhooks = [];
    this.loaded = false;
    this.viewing = null; // the webhook whose deliveries are shown
    this.dom = {
      body: $("webhooks-body"), empty: $("webhooks-empty"), error: $("webhooks-error"),
      dialog: $("webhook-dialog"), form: $("webhook-form"), url: $("webhook-url"),
      events: $("webhook-events"), secret: $("webhook-secret"), formError: $("webhook-dialog-error"),
      secretDialog: $("secret-dialog"), secretValue: $("secret-value"), copied: $("secret-copied"),
      dlvDialog: $("deliveries-dialog"), dlvBody: $("deliveries-body"), dlvEmpty: $("deliveries-empty"),
      dlvError: $("deliveries-error"), dlvUrl: $("deliveries-url"),
    };
    const d = this.dom;
    for (const name of EVENTS) {
      const box = el("input");
      box.type = "checkbox";
      box.name = "events";
      box.value = name;
      box.id = "webhook-event-" + name.replace(".", "-");
      const label = el("label", "check", null, box, el("span", "event-label"), el("code", null, name));
      d.events.append(label);
    }
    $("webhooks-refresh").addEventListener("click", () => this.load());
    $("webhooks-add").addEventListener("click", () => this.openAdd());
    $("secret-copy").addEventListener("click", () => this.copySecret());
    $("deliveries-refresh").addEventListener("click", () => this.loadDeliveries());
    d.secretDialog.addEventListener("close", () => { d.secretValue.value = ""; });
    d.dlvDialog.addEventListener("close", () => { this.viewing = null; });
    d.body.addEventListener("click", (ev) => {
      const b = ev.target.closest("button[data-action]");
      const hook = b && this.webhooks.find((w) => String(w.id) === b.dataset.id);
      if (!hook) return;
      if (b.dataset.action === "deliveries") this.openDeliveries(hook);
      else if (b.dataset.action === "delete") this.remove(hook);
    });
    wireDialog(d.dialog, d.form, () => this.create());
  }

  async load() {
    showError(this.dom.error, "");
    try {
      const data = await this.area.api.get("webhooks");
      this.webhooks = data.webhooks || [];
      this.loaded = true;
    } catch (err) {
      showError(this.dom.error, describeAdminError(err));
    }
    this.render();
  }

  clear() {
    this.webhooks = [];
    this.loaded = false;
    this.render();
  }

  render() {
    for (const label of this.dom.events.querySelectorAll("label.check")) {
      label.querySelector(".event-label").textContent = t("admin.event." + label.querySelector("input").value);
    }
    replaceRows(this.dom.body, this.webhooks.map((w) => this._row(w)));
    this.dom.empty.hidden = !this.loaded || this.webhooks.length > 0;
  }

  _row(w) {
    const url = el("th", "url", w.url);
    url.scope = "row";
    const events = el("ul", "events");
    for (const e of w.events || []) events.append(el("li", null, null, el("code", null, e)));
    const actions = el("td", "actions");
    actions.append(
      rowButton(t("admin.webhooks.deliveries"), t("admin.webhooks.deliveriesOf", { url: w.url }), "deliveries", w.id),
      rowButton(t("admin.delete"), t("admin.webhooks.deleteOf", { url: w.url }), "delete", w.id, "danger"),
    );
    const failed = Number(w.failed) || 0;
    return el("tr", null, null,
      url,
      cell(events),
      cell(w.secret_hint ? "…" + w.secret_hint : DASH, "mono"),
      cell(formatCount(w.pending), "num"),
      cell(formatCount(w.failed), "num" + (failed ? " bad" : "")),
      cell(deliverySummary(w.last_delivery)),
      actions,
    );
  }

  // ---- add --------------------------------------------------------------------------
  openAdd() {
    const d = this.dom;
    d.form.reset();
    for (const box of d.events.querySelectorAll("input")) box.checked = true;
    showError(d.formError, "");
    this.render();
    d.dialog.showModal();
  }

  async create() {
    const d = this.dom;
    showError(d.formError, "");
    const events = [...d.events.querySelectorAll("input:checked")].map((b) => b.value);
    if (!events.length) return showError(d.formError, t("admin.webhooks.eventsNeeded"));
    const body = { url: d.url.value.trim(), events };
    const secret = d.secret.value;
    if (secret) body.secret = secret;
    let data;
    try {
      data = await this.area.api.post("webhooks", body);
    } catch (err) {
      return showError(d.formError, describeAdminError(err));
    }
    d.form.reset();
    d.dialog.close();
    this.area.announce(t("admin.webhooks.added", { url: body.url }));
    const made = data.webhook || {};
    const shown = made.secret || data.secret || "";
    if (shown) {
      d.secretValue.value = shown;
      d.copied.textContent = "";
      d.secretDialog.showModal();
      d.secretValue.select();
    }
    await this.load();
  }

  async copySecret() {
    const d = this.dom;
    d.secretValue.select();
    let ok = false;
    try {
      await navigator.clipboard.writeText(d.secretValue.value);
      ok = true;
    } catch (e) {
      try { ok = document.execCommand("copy"); } catch (e2) { ok = false; }
    }
    d.copied.textContent = t(ok ? "admin.webhooks.copyDone" : "admin.webhooks.copyByHand");
  }

  // ---- delete -------------------------------------------------------------------------
  async remove(hook) {
    if (!(await confirmDialog(t("admin.webhooks.deleteConfirm", { url: hook.url })))) return;
    showError(this.dom.error, "");
    try {
      await this.area.api.delete("webhooks/" + hook.id);
    } catch (err) {
      showError(this.dom.error, describeAdminError(err));
      return;
    }
    this.area.announce(t("admin.webhooks.deleted", { url: hook.url }));
    await this.load();
  }

  // ---- deliveries ------------------------------------------------------------------
  openDeliveries(hook) {
    const d = this.dom;
    this.viewing = hook;
    d.dlvUrl.textContent = hook.url;
    d.dlvBody.replaceChildren();
    d.dlvEmpty.hidden = true;
    showError(d.dlvError, "");
    d.dlvDialog.showModal();
    this.loadDeliveries();
  }

  async loadDeliveries() {
    const d = this.dom;
    const hook = this.viewing;
    if (!hook) return;
    showError(d.dlvError, "");
    let list = [];
    try {
      const data = await this.area.api.get("webhooks/" + hook.id + "/deliveries", { limit: 20 });
      list = data.deliveries || [];
    } catch (err) {
      if (this.viewing === hook) showError(d.dlvError, describeAdminError(err));
      return;
    }
    if (this.viewing !== hook) return;
    d.dlvBody.replaceChildren(...list.map((x) => this._deliveryRow(x)));
    d.dlvEmpty.hidden = list.length > 0;
  }

  _deliveryRow(x) {
    const answer = [];
    if (x.last_status != null) answer.push(t("admin.deliveries.http", { status: x.last_status }));
    if (x.last_error) answer.push(String(x.last_error));
    const event = el("th", null, null, el("code", null, x.event));
    event.scope = "row";
    return el("tr", null, null,
      event,
      cell(el("span", "pill " + (x.state === "delivered" ? "on" : x.state === "failed" ? "off" : "wait"),
        t("admin.delivery." + x.state))),
      cell(formatCount(x.attempts), "num"),
      cell(answer.length ? answer.join(" · ") : DASH, "detail"),
      cell(formatWhen(x.created_at), "nowrap"),
      cell(formatWhen(x.last_attempt_at), "nowrap"),
      cell(x.state === "pending" ? formatWhen(x.next_attempt_at) : DASH, "nowrap"),
    );
  }
}
