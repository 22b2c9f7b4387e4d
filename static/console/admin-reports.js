// Settings › Reports: a date range, a time zone and a group; totals, a table per day and
// one per agent, and the same rows as CSV downloads (protocol §12).
import { t, getLanguage } from "/static/shared/i18n.js";
import { el } from "/static/shared/render.js";
import { DASH, cell, formatCount, formatDuration, showError, describeAdminError } from "./admin-api.js";

const $ = (id) => document.getElementById(id);
const DAY_MS = 86_400_000;
const MAX_DAYS = 366;

// The columns every row has, in the CSV's order, and how each is shown.
const COLUMNS = [
  ["conversations", formatCount], ["guest_messages", formatCount], ["agent_messages", formatCount],
  ["first_response_median", formatDuration], ["first_response_p90", formatDuration],
  ["queued", formatCount], ["queue_wait_median", formatDuration], ["queue_wait_max", formatDuration],
  ["missed", formatCount], ["rating_average", formatRating],
];
const HEADLINE = ["conversations", "guest_messages", "agent_messages", "first_response_median", "missed",
  "rating_average"];

/** The average rating (1–5, protocol §12) as "4.5 / 5"; null (nothing rated) as "—". */
function formatRating(v) {
  if (v == null || v === "" || !Number.isFinite(Number(v))) return DASH;
  return t("admin.reports.ratingOf", { n: Number(v).toLocaleString(getLanguage(), { maximumFractionDigits: 2 }) });
}

/** The browser's own IANA time zone ("Asia/Shanghai"), or UTC. */
export function browserTimeZone() {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  } catch (e) {
    return "UTC";
  }
}

function validZone(tz) {
  try {
    new Intl.DateTimeFormat("en", { timeZone: tz });
    return true;
  } catch (e) {
    return false;
  }
}

/** Today's date (YYYY-MM-DD) in a time zone. */
function today(tz) {
  const options = { timeZone: tz, year: "numeric", month: "2-digit", day: "2-digit" };
  return new Intl.DateTimeFormat("en-CA", options).format(new Date());
}

const dayNumber = (iso) => Date.parse(iso + "T00:00:00Z") / DAY_MS;
const isoDay = (n) => new Date(n * DAY_MS).toISOString().slice(0, 10);

/** "Mon, Jun 3" for "2024-06-03" (the date itself, whatever the browser's zone). */
function dayLabel(iso) {
  const ms = Date.parse(iso + "T00:00:00Z");
  if (!Number.isFinite(ms)) return String(iso);
  const options = { weekday: "short", month: "short", day: "numeric", timeZone: "UTC" };
  return new Date(ms).toLocaleDateString(getLanguage(), options);
}

export class ReportsScreen {
  constructor(area) {
    this.area = area;
    this.report = null;
    this.query = null; // the parameters of the report shown
    this.dom = {
      form: $("report-form"), from: $("report-from"), to: $("report-to"), tz: $("report-tz"),
      zones: $("report-tz-list"), group: $("report-group"), error: $("reports-error"),
      result: $("report-result"), totals: $("report-totals"), days: $("report-days"), agents: $("report-agents"),
    };
    this.dom.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.run();
    });
    $("report-csv-days").addEventListener("click", (ev) => this.download("days", ev.currentTarget));
    $("report-csv-agents").addEventListener("click", (ev) => this.download("agents", ev.currentTarget));
  }

  /** Defaults: the last 7 days in the browser's time zone, all groups. */
  _defaults() {
    const d = this.dom;
    const tz = browserTimeZone();
    d.tz.value = tz;
    d.to.value = today(tz);
    d.from.value = isoDay(dayNumber(d.to.value) - 6);
    if (!d.zones.options.length && typeof Intl.supportedValuesOf === "function") {
      d.zones.replaceChildren(...Intl.supportedValuesOf("timeZone").map((z) => new Option(z)));
    }
  }

  async load() {
    if (!this.dom.tz.value) this._defaults();
    const chosen = this.dom.group.value;
    try {
      await this.area.loadGroups();
    } catch (err) {
      showError(this.dom.error, describeAdminError(err));
      return;
    }
    this.area.fillGroupSelect(this.dom.group, chosen, { all: true });
    await this.run();
  }

  _params() {
    const d = this.dom;
    const from = d.from.value;
    const to = d.to.value;
    const tz = d.tz.value.trim();
    if (!from || !to) return { error: t("admin.reports.datesNeeded") };
    if (from > to) return { error: t("admin.reports.order") };
    if (dayNumber(to) - dayNumber(from) + 1 > MAX_DAYS) return { error: t("admin.reports.tooLong", { n: MAX_DAYS }) };
    if (!tz || !validZone(tz)) return { error: t("admin.reports.badZone") };
    return { params: { from, to, tz, group_id: d.group.value } };
  }

  async run() {
    const d = this.dom;
    const { params, error } = this._params();
    showError(d.error, error || "");
    if (error) return;
    d.form.setAttribute("aria-busy", "true");
    try {
      this.report = await this.area.api.get("reports", params);
      this.query = params;
      this.area.announce(t("admin.reports.ready", { from: params.from, to: params.to }));
    } catch (err) {
      showError(d.error, describeAdminError(err));
    } finally {
      d.form.removeAttribute("aria-busy");
    }
    this.render();
  }

  async download(rows, button) {
    if (!this.query) return;
    const q = this.query;
    button.disabled = true;
    showError(this.dom.error, "");
    try {
      await this.area.api.download("reports", { ...q, format: "csv", rows },
        `cschat-report-${rows}-${q.from}-${q.to}.csv`);
      this.area.announce(t("admin.reports.downloaded"));
    } catch (err) {
      showError(this.dom.error, describeAdminError(err));
    } finally {
      button.disabled = false;
    }
  }

  clear() {
    this.report = null;
    this.query = null;
    this.dom.tz.value = "";
    this.dom.group.replaceChildren();
    this.render();
  }

  render() {
    const r = this.report;
    const d = this.dom;
    d.result.hidden = !r;
    if (!r) return;
    const totals = r.totals || {};
    d.totals.replaceChildren(...HEADLINE.map((key) => {
      const format = COLUMNS.find(([k]) => k === key)[1];
      const box = el("div", "total", null,
        el("dt", null, t("admin.reports.col." + key)), el("dd", null, format(totals[key])));
      box.dataset.key = key;
      return box;
    }));
    this._table(d.days, t("admin.reports.date"), r.days || [], (row) => {
      const time = el("time", null, dayLabel(row.date));
      time.dateTime = row.date;
      return time;
    }, totals);
    this._table(d.agents, t("admin.reports.agent"), r.agents || [], (row) => row.name || "#" + row.admin_id, null);
  }

  /** A report table: one header column (date or agent), the COLUMNS, an optional total row. */
  _table(table, first, rows, label, totals) {
    const head = el("tr", null, null,
      el("th", null, first), ...COLUMNS.map(([k]) => el("th", "num", t("admin.reports.col." + k))));
    for (const th of head.children) th.scope = "col";
    const line = (row, name, cls) => {
      const th = el("th", null, null);
      th.scope = "row";
      th.append(name);
      return el("tr", cls, null, th, ...COLUMNS.map(([k, format]) => cell(format(row[k]), "num")));
    };
    const body = el("tbody");
    for (const row of rows) body.append(line(row, label(row)));
    if (!rows.length) {
      const td = el("td", "admin-empty", t("admin.reports.nothing"));
      td.colSpan = COLUMNS.length + 1;
      body.append(el("tr", null, null, td));
    }
    const parts = [el("thead", null, null, head), body];
    if (totals) parts.push(el("tfoot", null, null, line(totals, t("admin.reports.total"), "total-row")));
    table.replaceChildren(...parts);
  }
}
