// The "Send a card" dialog: a product card (file_type 3: id, title, price, image?, url?) or
// an order card (file_type 4: order_no, amount, title?, status?, url?), protocol R26.
// Addresses must be http(s); empty optional fields are left out.
import { t } from "/static/shared/i18n.js";
import { showError } from "./admin-api.js";

const $ = (id) => document.getElementById(id);

/** True for an absolute http(s) address. */
export function isHttpUrl(value) {
  if (!/^https?:\/\//i.test(value)) return false;
  try {
    const u = new URL(value);
    return (u.protocol === "http:" || u.protocol === "https:") && !!u.host;
  } catch (e) {
    return false;
  }
}

export class CardDialog {
  /** chat: the ChatPane (sendCard, readOnly, gid). */
  constructor(chat) {
    this.chat = chat;
    this.dialog = $("card-dialog");
    this.form = $("card-form");
    this.error = $("card-error");
    this.opener = null;
    $("card-btn").addEventListener("click", () => this.open());
    for (const b of this.dialog.querySelectorAll("[data-close]")) b.addEventListener("click", () => this.dialog.close());
    for (const r of this.form.querySelectorAll("input[name=kind]")) r.addEventListener("change", () => this._kind());
    this.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.submit();
    });
    this.dialog.addEventListener("close", () => {
      if (this.opener && this.opener.isConnected && !this.opener.disabled) this.opener.focus();
    });
  }

  get type() {
    const r = this.form.querySelector("input[name=kind]:checked");
    return r ? Number(r.value) : 3;
  }

  _kind() {
    const product = this.type === 3;
    $("card-product").hidden = !product;
    $("card-order").hidden = product;
    showError(this.error, "");
  }

  open() {
    if (this.chat.gid == null || this.chat.readOnly) return;
    this.opener = document.activeElement;
    this.form.reset();
    this._kind();
    showError(this.error, "");
    for (const i of this.form.querySelectorAll("input")) i.removeAttribute("aria-invalid");
    this.dialog.showModal();
    $("card-id").focus();
  }

  /** The card to send, or null after showing what is wrong. */
  _card() {
    const product = this.type === 3;
    const fields = product
      ? [["id", "card-id", "cards.productId", true], ["title", "card-title", "cards.productTitle", true],
        ["price", "card-price", "cards.price", true], ["image", "card-image", "cards.image", false, true],
        ["url", "card-url", "cards.url", false, true]]
      : [["order_no", "card-order-no", "cards.orderNo", true], ["amount", "card-amount", "cards.amount", true],
        ["title", "card-order-title", "cards.orderTitle", false], ["status", "card-status", "cards.status", false],
        ["url", "card-order-url", "cards.url", false, true]];
    const card = {};
    const missing = [];
    let firstBad = null;
    let badUrl = null;
    for (const [key, id, label, required, url] of fields) {
      const input = $(id);
      const value = input.value.trim();
      input.removeAttribute("aria-invalid");
      if (!value) {
        if (required) {
          missing.push(t(label));
          input.setAttribute("aria-invalid", "true");
          firstBad = firstBad || input;
        }
        continue;
      }
      if (url && !isHttpUrl(value)) {
        input.setAttribute("aria-invalid", "true");
        badUrl = badUrl || t(label).replace(/（.*）|\s*\(.*\)/, "");
        firstBad = firstBad || input;
        continue;
      }
      card[key] = value;
    }
    if (missing.length) showError(this.error, t("cards.required", { fields: missing.join(", ") }));
    else if (badUrl) showError(this.error, t("cards.badUrl", { field: badUrl }));
    if (firstBad) {
      firstBad.focus();
      return null;
    }
    return card;
  }

  submit() {
    if (this.chat.gid == null || this.chat.readOnly) {
      showError(this.error, t("cards.notOpen"));
      return;
    }
    const card = this._card();
    if (!card) return;
    const type = this.type;
    this.dialog.close();
    this.chat.sendCard(type, card);
  }
}
