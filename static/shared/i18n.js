// A tiny message catalogue for zh-CN and en. Each page adds its own messages with
// addCatalog({en: {hi: "Hi {name}"}, "zh-CN": {hi: "你好，{name}"}}) and calls t("hi", {name}).
// translatePage() fills elements marked data-i18n (text), data-i18n-title, -placeholder, -aria-label.

export const LANGUAGES = [
  { code: "zh-CN", label: "中文" },
  { code: "en", label: "English" },
];
const STORE_KEY = "cschat.lang";
const catalog = { en: {}, "zh-CN": {} };
const listeners = new Set();

function normalize(lang) {
  return /^zh/i.test(String(lang || "")) ? "zh-CN" : "en";
}

function remembered() {
  try {
    return localStorage.getItem(STORE_KEY);
  } catch (e) {
    return null; // storage may be blocked (third-party iframe)
  }
}

let current = normalize(remembered() || (navigator.languages && navigator.languages[0]) || navigator.language);
document.documentElement.lang = current;

/** Merge messages for both languages: {en: {...}, "zh-CN": {...}}. */
export function addCatalog(messages) {
  for (const lang of Object.keys(catalog)) Object.assign(catalog[lang], messages[lang] || {});
}

/** The text for key in the current language, with {name} placeholders filled in. */
export function t(key, vars) {
  let s = catalog[current][key];
  if (s === undefined) s = catalog.en[key];
  if (s === undefined) s = key;
  if (vars) s = s.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m));
  return s;
}

export function getLanguage() {
  return current;
}

export function setLanguage(lang) {
  const next = normalize(lang);
  try {
    localStorage.setItem(STORE_KEY, next);
  } catch (e) { /* not remembered, still switched */ }
  if (next === current) return;
  current = next;
  document.documentElement.lang = current;
  for (const fn of [...listeners]) fn(current);
}

/** Call fn(lang) after each change; returns a function that stops it. */
export function onLanguageChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function translatePage(root = document) {
  for (const e of root.querySelectorAll("[data-i18n]")) e.textContent = t(e.dataset.i18n);
  for (const attr of ["title", "placeholder", "aria-label"]) {
    for (const e of root.querySelectorAll(`[data-i18n-${attr}]`)) e.setAttribute(attr, t(e.getAttribute(`data-i18n-${attr}`)));
  }
}

/** Wire a <select> (or any element with .value and a change event) as the language switch. */
export function bindLanguageSelect(select) {
  if (!select.options.length) {
    for (const { code, label } of LANGUAGES) {
      const o = document.createElement("option");
      o.value = code;
      o.textContent = label;
      select.append(o);
    }
  }
  select.value = current;
  select.addEventListener("change", () => setLanguage(select.value));
  onLanguageChange((lang) => { select.value = lang; });
}
