// Settings › Hours & messages: one group's time zone, business hours, closed days, greeting,
// busy and away replies and notify address (protocol §4 "Availability", "E-mail"; §10
// GET/PUT /api/admin/groups/<id>/settings), with the group's availability right now and a
// notice when the server has no SMTP server (mail_configured false: nothing is mailed).
// The whole settings object is PUT; the server checks it and its errors are shown by the form.
import { t, getLanguage, translatePage } from "/static/shared/i18n.js";
import { el } from "/static/shared/render.js";
import { confirmDialog } from "./dialogs.js";
import { showError, describeAdminError } from "./admin-api.js";
import { browserTimeZone } from "./admin-reports.js";

const $ = (id) => document.getElementById(id);
const DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"];
const MAX_RANGES = 4;
const TEXTS = ["greeting", "busy_reply", "away_reply"];
const LANGS = [["en", "en"], ["zh", "zh-CN"]]; // settings key, the textarea's lang
const MAX_TEXT = 500;
const NEW_RANGE = ["09:00", "18:00"];
const STATES = { online: "on", busy: "wait", away: "off" }; // availability → pill colour

/** "Monday" … "Sunday" in the console's language (2024-01-01 was a Monday). */
function dayName(day, style = "long") {
  const i = DAYS.indexOf(day);
  return new Intl.DateTimeFormat(getLanguage(), { weekday: style, timeZone: "UTC" })
    .format(new Date(Date.UTC(2024, 0, 1 + i)));
}

/** "Thu, Dec 25, 2026" for "2026-12-25", whatever the browser's zone. */
function dateLabel(iso) {
  const ms = Date.parse(iso + "T00:00:00Z");
  if (!Number.isFinite(ms)) return String(iso);
  return new Date(ms).toLocaleDateString(getLanguage(), {
    weekday: "short", year: "numeric", month: "short", day: "numeric", timeZone: "UTC",
  });
}

function validZone(zone) {
  if (!zone) return false;
  try {
    new Intl.DateTimeFormat("en", { timeZone: zone });
    return true;
  } catch (e) {
    return false;
  }
}

/** Today (YYYY-MM-DD) in a time zone (UTC when it is not one). */
function todayIn(zone) {
  const options = { timeZone: validZone(zone) ? zone : "UTC", year: "numeric", month: "2-digit", day: "2-digit" };
  return new Intl.DateTimeFormat("en-CA", options).format(new Date());
}

// A range's end of "24:00" (the end of the day) is "00:00" in a time field, which cannot hold 24:00.
const toField = (time) => (time === "24:00" ? "00:00" : String(time || "").slice(0, 5));
const fromField = (value, isEnd) => {
  const v = String(value || "").slice(0, 5);
  return isEnd && v === "00:00" ? "24:00" : v;
};

export class HoursScreen {
  constructor(area) {
    this.area = area;
    this.groupId = null; // the group chosen (a string, as the <select> has it)
    this.shownGroup = null; // the group whose settings the form holds
    this.loaded = false;
    this.dirty = false; // changed since loaded or saved
    this.saving = false;
    this.token = 0;
    this.mode = "always"; // "always" (hours null) or "set"
    this.hours = {}; // day -> [[from, to] as in the time fields]
    this.closed = []; // "YYYY-MM-DD", sorted
    this.availability = null;
    this.mailConfigured = null;
    this.dom = {
      group: $("hours-group"), error: $("hours-error"), form: $("hours-form"), formError: $("hours-form-error"),
      mail: $("hours-mail"), now: $("hours-now"), state: $("hours-availability"), why: $("hours-availability-why"),
      tz: $("hours-tz"), zones: $("hours-tz-list"), tzHint: $("hours-tz-hint"), tzUse: $("hours-tz-use"),
      tzNow: $("hours-tz-now"), always: $("hours-always"), set: $("hours-set"), days: $("hours-days"),
      none: $("hours-none"), copy: $("hours-copy"), closed: $("hours-closed"), date: $("hours-closed-date"),
      addDay: $("hours-closed-add"), texts: $("hours-texts"), email: $("hours-email"), save: $("hours-save"),
    };
    const d = this.dom;
    this._buildTexts();
    $("hours-refresh").addEventListener("click", () => this.refresh());
    d.group.addEventListener("change", () => this.pickGroup());
    d.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.save();
    });
    d.form.addEventListener("input", (ev) => this._changed(ev.target));
    d.form.addEventListener("change", (ev) => this._changed(ev.target));
    for (const radio of [d.always, d.set]) radio.addEventListener("change", () => this.setMode(radio.value));
    d.tz.addEventListener("input", () => {
      this._renderZone();
      this._renderClosed(); // "today" is the zone's
    });
    d.tzUse.addEventListener("click", () => {
      d.tz.value = browserTimeZone();
      this._changed(d.tz);
      this._renderZone();
      d.tz.focus();
    });
    d.days.addEventListener("click", (ev) => {
      const b = ev.target.closest("button[data-action]");
      if (!b) return;
      if (b.dataset.action === "add") this.addRange(b.dataset.day);
      else if (b.dataset.action === "remove") this.removeRange(b.dataset.day, Number(b.dataset.index));
    });
    d.days.addEventListener("input", (ev) => {
      const f = ev.target;
      if (!f.dataset || !f.dataset.day) return;
      const ranges = this.hours[f.dataset.day] || [];
      const range = ranges[Number(f.dataset.index)];
      if (range) range[f.dataset.end ? 1 : 0] = f.value;
      this._renderNone();
    });
    d.copy.addEventListener("click", () => this.copyMonday());
    d.addDay.addEventListener("click", () => this.addClosedDay());
    d.date.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter") {
        ev.preventDefault(); // not a submit of the whole form
        this.addClosedDay();
      }
    });
    d.closed.addEventListener("click", (ev) => {
      const b = ev.target.closest("button[data-date]");
      if (b) this.removeClosedDay(b.dataset.date);
    });
  }

  /** The three texts, each in English and Chinese (their labels are translated with the page). */
  _buildTexts() {
    const box = this.dom.texts;
    for (const field of TEXTS) {
      const set = el("fieldset", "hours-text");
      const legend = el("legend");
      legend.dataset.i18n = "admin.hours.text." + field;
      const hint = el("p", "admin-hint");
      hint.id = "hours-" + field + "-hint";
      hint.dataset.i18n = "admin.hours.textHint." + field;
      set.append(legend, hint);
      for (const [key, lang] of LANGS) {
        const area = el("textarea");
        area.id = "hours-" + field + "-" + key;
        area.rows = 2;
        area.maxLength = MAX_TEXT;
        area.lang = lang;
        area.dataset.field = field;
        area.dataset.lang = key;
        area.setAttribute("aria-describedby", hint.id);
        const name = el("span");
        name.dataset.i18n = "admin.hours.lang." + key;
        set.append(el("label", "hours-field", null, name, area));
      }
      box.append(set);
    }
    translatePage(box);
  }

  // ---- loading -------------------------------------------------------------------------
  async load() {
    if (!(await this.area.pickGroup(this))) return;
    if (!this.dom.zones.options.length && typeof Intl.supportedValuesOf === "function") {
      this.dom.zones.replaceChildren(...Intl.supportedValuesOf("timeZone").map((z) => new Option(z)));
    }
    // Back on the tab with changes not saved: they stay; only the availability is read again.
    await this.loadSettings({ keepForm: this.dirty && this.shownGroup === this.groupId });
  }

  async loadSettings({ keepForm = false } = {}) {
    const group = this.groupId;
    const token = ++this.token;
    showError(this.dom.error, "");
    if (group == null) {
      this.loaded = false;
      return this.render();
    }
    let data;
    try {
      data = await this.area.api.get("groups/" + group + "/settings");
    } catch (err) {
      if (token === this.token) showError(this.dom.error, describeAdminError(err));
      return;
    }
    if (token !== this.token) return;
    this._applyState(data);
    if (!keepForm) this._applySettings(data.settings || {});
    this.loaded = true;
    this.render();
  }

  /** Refresh: the settings again (asking first when changes would be lost). */
  async refresh() {
    if (this.dirty && !(await confirmDialog(t("admin.hours.discard")))) return;
    this.dirty = false;
    await this.load();
  }

  /** Another group in the <select>: its settings (asking first when changes would be lost). */
  async pickGroup() {
    const next = this.dom.group.value;
    if (this.dirty && !(await confirmDialog(t("admin.hours.discard")))) {
      this.dom.group.value = this.groupId;
      return;
    }
    this.dirty = false;
    this.groupId = next;
    await this.loadSettings();
  }

  _applyState(data) {
    this.availability = typeof data.availability === "string" ? data.availability : null;
    this.mailConfigured = data.mail_configured == null ? null : !!data.mail_configured;
  }

  /** Fill the form with a group's settings (protocol §10 `settings`). */
  _applySettings(s) {
    const d = this.dom;
    this.shownGroup = this.groupId;
    this.dirty = false;
    d.tz.value = typeof s.timezone === "string" ? s.timezone : "UTC";
    this.hours = {};
    if (s.hours && typeof s.hours === "object") {
      this.mode = "set";
      for (const day of DAYS) {
        const ranges = Array.isArray(s.hours[day]) ? s.hours[day] : [];
        this.hours[day] = ranges.slice(0, MAX_RANGES).map((r) => [toField(r[0]), toField(r[1])]);
      }
    } else {
      this.mode = "always";
    }
    this.closed = Array.isArray(s.closed_days) ? [...new Set(s.closed_days.map(String))].sort() : [];
    for (const field of TEXTS) {
      const texts = s[field] && typeof s[field] === "object" ? s[field] : {};
      for (const [key] of LANGS) $("hours-" + field + "-" + key).value = typeof texts[key] === "string" ? texts[key] : "";
    }
    d.email.value = typeof s.notify_email === "string" ? s.notify_email : "";
    d.date.value = "";
    this.daysKey = this.closedKey = null; // shown anew
    this._clearInvalid();
    showError(d.formError, "");
  }

  clear() {
    this.token++;
    this.groupId = this.shownGroup = null;
    this.loaded = this.dirty = false;
    this.availability = this.mailConfigured = null;
    this.hours = {};
    this.closed = [];
    this.mode = "always";
    this.dom.group.replaceChildren();
    this.dom.form.reset();
    showError(this.dom.formError, "");
    showError(this.dom.error, "");
    this.render();
  }

  // ---- showing --------------------------------------------------------------------------
  render() {
    const d = this.dom;
    d.form.hidden = !this.loaded;
    d.mail.hidden = !this.loaded || this.mailConfigured !== false;
    this._renderState();
    if (!this.loaded) return;
    d.always.checked = this.mode === "always";
    d.set.checked = this.mode === "set";
    this._renderZone();
    this._renderDays();
    this._renderClosed();
  }

  _renderState() {
    const d = this.dom;
    const state = this.loaded && STATES[this.availability] ? this.availability : null;
    d.now.hidden = !state;
    if (!state) return;
    d.state.className = "pill " + STATES[state];
    d.state.dataset.availability = state;
    d.state.textContent = t("admin.hours.state." + state);
    d.why.textContent = t("admin.hours.why." + state);
  }

  _renderZone() {
    const d = this.dom;
    const mine = browserTimeZone();
    d.tz.placeholder = mine;
    d.tzHint.textContent = t("admin.hours.zoneHint", { zone: mine });
    d.tzUse.hidden = d.tz.value.trim() === mine;
    const zone = d.tz.value.trim();
    if (!zone) d.tzNow.textContent = "";
    else if (!validZone(zone)) d.tzNow.textContent = t("admin.hours.zoneUnknown");
    else {
      const now = new Intl.DateTimeFormat(getLanguage(), {
        timeZone: zone, weekday: "long", hour: "2-digit", minute: "2-digit",
      }).format(new Date());
      d.tzNow.textContent = t("admin.hours.zoneNow", { time: now });
    }
  }

  /**
   * The days and their ranges. Rebuilt only when their shape (or the language) changed, or
   * when `force`d: a render of the Settings area (a chat message counted) must not take the
   * focus out of a time field; the fields' values are the model's (kept by input events).
   */
  _renderDays(force) {
    const d = this.dom;
    const set = this.mode === "set";
    const key = [getLanguage(), this.mode, ...DAYS.map((day) => (this.hours[day] || []).length)].join("|");
    if (!force && key === this.daysKey) return;
    this.daysKey = key;
    d.days.hidden = !set;
    d.copy.closest(".hours-copy").hidden = !set;
    const rows = DAYS.map((day) => {
      const name = dayName(day);
      const label = el("span", "hours-day-name", name);
      label.id = "hours-day-" + day;
      const list = el("ul", "hours-ranges");
      const ranges = this.hours[day] || [];
      ranges.forEach((range, i) => {
        const n = i + 1;
        const from = this._timeField(day, i, false, range[0], t("admin.hours.from", { day: name, n }));
        const to = this._timeField(day, i, true, range[1], t("admin.hours.to", { day: name, n }));
        const dash = el("span", "hours-dash", "–");
        dash.setAttribute("aria-hidden", "true");
        const remove = el("button", "ghost small hours-remove", "×");
        remove.type = "button";
        remove.dataset.action = "remove";
        remove.dataset.day = day;
        remove.dataset.index = String(i);
        remove.setAttribute("aria-label", t("admin.hours.removeRange", { day: name, n }));
        remove.title = remove.getAttribute("aria-label");
        list.append(el("li", "hours-range", null, from, dash, to, remove));
      });
      if (!ranges.length) list.append(el("li", "hours-closed-day", t("admin.hours.closedDay")));
      const add = el("button", "small hours-add", t("admin.hours.addRange"));
      add.type = "button";
      add.dataset.action = "add";
      add.dataset.day = day;
      add.disabled = ranges.length >= MAX_RANGES;
      add.setAttribute("aria-label", t("admin.hours.addRangeOf", { day: name }));
      const row = el("div", "hours-day", null, label, list, add);
      row.setAttribute("role", "group");
      row.setAttribute("aria-labelledby", label.id);
      row.dataset.day = day;
      return row;
    });
    d.days.replaceChildren(...rows);
    this._renderNone();
  }

  _timeField(day, index, isEnd, value, label) {
    const f = el("input");
    f.type = "time";
    f.value = value || "";
    f.required = true;
    f.dataset.day = day;
    f.dataset.index = String(index);
    if (isEnd) f.dataset.end = "1";
    f.setAttribute("aria-label", label);
    return f;
  }

  _renderNone() {
    const open = DAYS.some((day) => (this.hours[day] || []).length);
    this.dom.none.hidden = this.mode !== "set" || open;
  }

  _renderClosed(force) {
    const d = this.dom;
    const today = todayIn(d.tz.value.trim());
    const key = [getLanguage(), today, ...this.closed].join("|");
    if (!force && key === this.closedKey) return;
    this.closedKey = key;
    d.closed.replaceChildren(...this.closed.map((iso) => {
      const label = dateLabel(iso);
      const time = el("time", null, label);
      time.dateTime = iso;
      const item = el("li", "hours-closed-item" + (iso < today ? " past" : ""), null, time);
      if (iso === today) item.append(el("span", "hours-today", t("admin.hours.today")));
      else if (iso < today) item.append(el("span", "hours-today", t("admin.hours.past")));
      const remove = el("button", "ghost small hours-remove", "×");
      remove.type = "button";
      remove.dataset.date = iso;
      remove.setAttribute("aria-label", t("admin.hours.removeDay", { date: label }));
      remove.title = remove.getAttribute("aria-label");
      item.append(remove);
      return item;
    }));
    if (!this.closed.length) d.closed.append(el("li", "muted", t("admin.hours.noClosedDays")));
  }

  // ---- editing ----------------------------------------------------------------------------
  _changed(target) {
    if (!this.loaded) return;
    if (target === this.dom.group) return; // not part of the settings
    this.dirty = true;
    if (target && target.removeAttribute) target.removeAttribute("aria-invalid");
  }

  setMode(mode) {
    this.mode = mode === "set" ? "set" : "always";
    // Hours to start from the first time: Monday to Friday, 9 to 6.
    if (this.mode === "set" && !DAYS.some((day) => (this.hours[day] || []).length)) {
      for (const day of WEEKDAYS) this.hours[day] = [[...NEW_RANGE]];
    }
    this.dirty = true;
    this._renderDays(true);
  }

  addRange(day) {
    const ranges = this.hours[day] || (this.hours[day] = []);
    if (ranges.length >= MAX_RANGES) return;
    // After the last range (two hours from its end), else the usual day: a start to adjust.
    const end = ranges.length ? ranges[ranges.length - 1][1] : "";
    ranges.push(end && end > "00:00" && end < "22:00" ? [end, nextHours(end, 2)] : [...NEW_RANGE]);
    this.dirty = true;
    this._renderDays(true);
    const fields = this.dom.days.querySelectorAll(`input[data-day="${day}"]`);
    if (fields.length) fields[fields.length - 2].focus();
  }

  removeRange(day, index) {
    const ranges = this.hours[day] || [];
    ranges.splice(index, 1);
    this.dirty = true;
    this._renderDays(true);
    const again = this.dom.days.querySelector(`button[data-action=remove][data-day="${day}"]`) ||
      this.dom.days.querySelector(`button[data-action=add][data-day="${day}"]`);
    if (again) again.focus();
  }

  copyMonday() {
    const monday = this.hours.mon || [];
    for (const day of WEEKDAYS.slice(1)) this.hours[day] = monday.map((r) => [...r]);
    this.dirty = true;
    this._renderDays(true);
    this.area.announce(t("admin.hours.copied"));
  }

  addClosedDay() {
    const d = this.dom;
    const iso = d.date.value;
    if (!/^\d{4}-\d{2}-\d{2}$/.test(iso)) {
      d.date.focus();
      return;
    }
    if (!this.closed.includes(iso)) {
      this.closed = [...this.closed, iso].sort();
      this.dirty = true;
    }
    d.date.value = "";
    this._renderClosed();
    this.area.announce(t("admin.hours.dayAdded", { date: dateLabel(iso) }));
    d.date.focus();
  }

  removeClosedDay(iso) {
    const i = this.closed.indexOf(iso);
    if (i < 0) return;
    this.closed = this.closed.filter((x) => x !== iso);
    this.dirty = true;
    this._renderClosed();
    const buttons = this.dom.closed.querySelectorAll("button[data-date]");
    (buttons[Math.min(i, buttons.length - 1)] || this.dom.date).focus();
    this.area.announce(t("admin.hours.dayRemoved", { date: dateLabel(iso) }));
  }

  // ---- saving ---------------------------------------------------------------------------
  /** The settings object of the form, or {error, field}. */
  _collect() {
    const d = this.dom;
    const timezone = d.tz.value.trim();
    if (!timezone) return { error: t("admin.hours.zoneNeeded", { zone: browserTimeZone() }), field: d.tz };
    let hours = null;
    if (this.mode === "set") {
      hours = {};
      for (const day of DAYS) {
        const ranges = this.hours[day] || [];
        if (!ranges.length) continue; // a day left out is closed
        hours[day] = [];
        for (let i = 0; i < ranges.length; i++) {
          const from = fromField(ranges[i][0], false);
          const to = fromField(ranges[i][1], true);
          if (!/^\d\d:\d\d$/.test(from) || !/^\d\d:\d\d$/.test(to) || from >= to) {
            const field = d.days.querySelector(`input[data-day="${day}"][data-index="${i}"]`);
            return { error: t("admin.hours.badRange", { day: dayName(day), n: i + 1 }), field };
          }
          hours[day].push([from, to]);
        }
      }
    }
    const settings = { timezone, hours, closed_days: [...this.closed] };
    for (const field of TEXTS) {
      settings[field] = {};
      for (const [key] of LANGS) settings[field][key] = $("hours-" + field + "-" + key).value;
    }
    settings.notify_email = d.email.value.trim() || null;
    return { settings };
  }

  async save() {
    const d = this.dom;
    if (!this.loaded || this.shownGroup == null || this.saving) return;
    this._clearInvalid();
    showError(d.formError, "");
    const { settings, error, field } = this._collect();
    if (error) {
      showError(d.formError, error);
      if (field) this._markInvalid(field);
      return;
    }
    const group = this.shownGroup;
    this.saving = true;
    d.save.disabled = true;
    let data;
    try {
      data = await this.area.api.put("groups/" + group + "/settings", settings);
    } catch (err) {
      showError(d.formError, describeAdminError(err));
      this._markServerField(err.message);
      return;
    } finally {
      this.saving = false;
      d.save.disabled = false;
    }
    if (group !== this.shownGroup) return;
    this._applyState(data);
    this._applySettings(data.settings || settings);
    this.render();
    this.area.announce(t("admin.hours.saved", { name: this.area.groupName(group) }));
  }

  /** The field a server error names ("timezone must be …", "hours.mon ranges …"). */
  _markServerField(message) {
    const m = /^(?:unknown field )?([a-z_]+)(?:\.([a-z]{3}))?/.exec(String(message || ""));
    if (!m) return;
    const d = this.dom;
    const fields = {
      timezone: d.tz, closed_days: d.date, notify_email: d.email,
      greeting: $("hours-greeting-en"), busy_reply: $("hours-busy_reply-en"), away_reply: $("hours-away_reply-en"),
    };
    let field = fields[m[1]];
    if (m[1] === "hours") {
      field = (m[2] && d.days.querySelector(`input[data-day="${m[2]}"]`)) || d.set;
    }
    if (field) this._markInvalid(field);
  }

  _markInvalid(field) {
    field.setAttribute("aria-invalid", "true");
    field.focus();
  }

  _clearInvalid() {
    for (const f of this.dom.form.querySelectorAll("[aria-invalid]")) f.removeAttribute("aria-invalid");
  }
}

/** "HH:MM" plus `n` hours (at most 23:59 — the caller checks). */
function nextHours(time, n) {
  const [h, m] = time.split(":").map(Number);
  return String(Math.min(h + n, 23)).padStart(2, "0") + ":" + String(m).padStart(2, "0");
}
