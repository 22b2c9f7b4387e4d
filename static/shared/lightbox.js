// An image lightbox, shared by the widget and the console. Load it on first use:
//
//   list.addEventListener("click", async (e) => {
//     const link = e.target.closest(".cs-image-link");        // render.js wraps photos in it
//     if (!link || e.ctrlKey || e.metaKey || e.shiftKey) return; // new tab as usual
//     e.preventDefault();
//     const { openLightbox } = await import("/static/shared/lightbox.js");
//     openLightbox(link.href, link.querySelector("img").alt);
//   });
//
// openLightbox(src, alt) shows the picture as large as the page allows, in a modal <dialog>
// (the rest of the page is inert; Tab stays on its close button). Escape, the close button
// or a click beside the picture closes it; the focus then goes back where it was. Returns
// a function that closes it. Styles are set inline (CSP-safe); the dialog has the class
// cs-lightbox. Its "Close" label comes from i18n.js (zh-CN, en).

import { addCatalog, t } from "./i18n.js";

addCatalog({
  en: { "lightbox.close": "Close", "lightbox.image": "Image" },
  "zh-CN": { "lightbox.close": "关闭", "lightbox.image": "图片" },
});

export function openLightbox(src, alt = "") {
  const back = document.activeElement;
  const dialog = document.createElement("dialog");
  dialog.className = "cs-lightbox";
  dialog.setAttribute("aria-label", alt || t("lightbox.image"));
  dialog.style.cssText = "box-sizing:border-box;width:100%;height:100%;max-width:none;max-height:none;margin:0;" +
    "padding:48px 8px 8px;border:0;background:#000000e0;display:flex;align-items:center;justify-content:center";
  const img = document.createElement("img");
  img.src = src;
  img.alt = alt;
  img.style.cssText = "max-width:100%;max-height:100%;object-fit:contain;background:#fff";
  const close = document.createElement("button");
  close.type = "button";
  close.textContent = "×";
  close.setAttribute("aria-label", t("lightbox.close"));
  close.title = t("lightbox.close");
  close.style.cssText = "position:absolute;top:6px;right:6px;width:40px;height:40px;padding:0;border:0;" +
    "border-radius:50%;background:#fff;color:#111;font:28px/40px sans-serif;cursor:pointer";
  dialog.append(img, close);
  dialog.addEventListener("click", (e) => { if (e.target !== img) dialog.close(); });
  dialog.addEventListener("keydown", (e) => {
    if (e.key === "Tab") { // the close button is all there is to focus
      e.preventDefault();
      close.focus();
    }
  });
  dialog.addEventListener("close", () => {
    dialog.remove();
    if (back && back.isConnected) back.focus();
  });
  document.body.append(dialog);
  dialog.showModal(); // Escape closes it
  close.focus();
  return () => dialog.close();
}
