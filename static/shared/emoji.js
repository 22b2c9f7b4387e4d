// A small emoji picker, shared by the widget and the console. Load it on first use:
//
//   button.addEventListener("click", async () => {
//     const { toggleEmojiPicker } = await import("/static/shared/emoji.js");
//     toggleEmojiPicker(button, textarea, t("emoji"));   // label: the popup's accessible name
//   });
//
// toggleEmojiPicker(button, field, label) opens a grid of EMOJI next to the button (above it
// when there is room), or closes it if open; it sets the button's aria-expanded (give the
// button aria-haspopup="dialog"). Arrow keys, Home and End move; Enter (or a click) inserts
// the emoji at the field's caret, closes the grid, focuses the field and fires an "input"
// event on it; Escape closes it and gives the focus back to the button; so do Tab and a
// click elsewhere (without moving the focus back). Styles are set inline, CSP-safe; a page
// may add hover and focus colours with `.cs-emoji button:hover`.
// Also exported: insertAtCaret(field, text), closeEmojiPicker(refocus), EMOJI, COLUMNS.

export const EMOJI = ("😀 😄 😁 😂 🤣 😊 🙂 😉 😍 😘 😋 😜 🤔 🤗 🤩 😎 🥳 😏 😐 🙄 😬 😴 😷 🤒 " +
  "😮 😳 🥺 😢 😭 😤 😡 😱 😇 🤐 🤭 🤫 👍 👎 👌 ✌️ 🤞 👏 🙌 🙏 💪 👋 🤝 👀 ❤️ 🧡 💛 💚 💙 " +
  "💜 💔 💯 ✨ 🔥 🎉 🎁 🌹 🌟 ☀️ ☕ 🍵 🍰 📦 🚚 💰 💳 🛒 🏷️ 📷 ✅ ❌ ❓ ❗ ⏰ 🙋").split(" ");
export const COLUMNS = 8;
let current = null; // {box, button}

/** Put text in place of the field's selection (at its caret), as if typed. */
export function insertAtCaret(field, text) {
  const start = field.selectionStart ?? field.value.length;
  field.setRangeText(text, start, field.selectionEnd ?? start, "end");
  field.focus();
  field.dispatchEvent(new Event("input", { bubbles: true }));
}

export function closeEmojiPicker(refocus) {
  if (!current) return;
  const { box, button } = current;
  current = null;
  removeEventListener("pointerdown", outside, true);
  box.remove();
  button.setAttribute("aria-expanded", "false");
  if (refocus) button.focus();
}

function outside(e) {
  if (current && !current.box.contains(e.target) && !current.button.contains(e.target)) closeEmojiPicker();
}

export function toggleEmojiPicker(button, field, label = "Emoji") {
  const again = current && current.button === button;
  closeEmojiPicker(again);
  if (again) return;
  const box = document.createElement("div");
  box.className = "cs-emoji";
  box.setAttribute("role", "dialog");
  box.setAttribute("aria-label", label);
  box.style.cssText = "position:fixed;z-index:2147483647;display:grid;gap:2px;padding:6px;" +
    `grid-template-columns:repeat(${COLUMNS},34px);max-height:226px;overflow-y:auto;` +
    "background:#fff;border:1px solid #c9ced6;border-radius:10px;box-shadow:0 6px 24px #0003";
  for (const [i, emoji] of EMOJI.entries()) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = emoji;
    b.tabIndex = i ? -1 : 0; // one tab stop; arrows move within
    b.style.cssText = "width:34px;height:34px;padding:0;border:0;border-radius:6px;background:none;" +
      "font:22px/34px sans-serif;cursor:pointer";
    box.append(b);
  }
  box.addEventListener("mousedown", (e) => e.preventDefault()); // keep the focus where it is
  box.addEventListener("click", (e) => {
    const b = e.target.closest("button");
    if (!b) return;
    closeEmojiPicker();
    insertAtCaret(field, b.textContent);
  });
  box.addEventListener("keydown", (e) => {
    const items = [...box.children];
    const i = items.indexOf(document.activeElement);
    const to = { ArrowRight: i + 1, ArrowLeft: i - 1, ArrowDown: i + COLUMNS, ArrowUp: i - COLUMNS,
      Home: 0, End: items.length - 1 }[e.key];
    if (e.key === "Escape") {
      e.preventDefault();
      e.stopPropagation();
      closeEmojiPicker(true);
    } else if (to !== undefined && items[to]) {
      e.preventDefault();
      items[i].tabIndex = -1;
      items[to].tabIndex = 0;
      items[to].focus();
    }
  });
  box.addEventListener("focusout", (e) => {
    if (current && current.box === box && !box.contains(e.relatedTarget)) closeEmojiPicker();
  });
  document.body.append(box);
  current = { box, button };
  button.setAttribute("aria-expanded", "true");
  addEventListener("pointerdown", outside, true);
  // Above the button if it fits, else below; within the window.
  const r = button.getBoundingClientRect();
  const w = box.offsetWidth, h = box.offsetHeight;
  box.style.left = Math.max(4, Math.min(r.left, innerWidth - w - 4)) + "px";
  box.style.top = (r.top - h - 6 >= 4 ? r.top - h - 6 : Math.max(4, Math.min(r.bottom + 6, innerHeight - h - 4))) + "px";
  box.firstChild.focus();
}
