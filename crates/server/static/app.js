// keepwatch web UI: the little script there is. Pages work without it; it adds the live
// dashboard, the cron preview and delete confirmations.
"use strict";

// The dashboard: when the server says checks changed, fetch the table again (same filter).
function liveTable(box) {
  let pending = false;
  async function refresh() {
    if (pending) return;
    pending = true;
    try {
      const table = box.querySelector("table");
      const query = table ? table.dataset.query : location.search.slice(1);
      const res = await fetch(box.dataset.table + "?" + query, {
        headers: { "X-Keepwatch-Fragment": "1" },
        credentials: "same-origin",
      });
      if (res.status === 401) { location.reload(); return; }
      if (res.ok) box.innerHTML = await res.text();
    } finally {
      pending = false;
    }
  }
  const events = new EventSource(box.dataset.stream);
  events.addEventListener("changed", refresh);
}

// The check form: the next runs of the cron expression as you type.
function cronPreview(input) {
  const out = document.getElementById(input.getAttribute("aria-describedby"));
  const tz = document.getElementById("tz");
  let timer = null;
  let asked = 0;
  async function show() {
    const url = input.dataset.cronPreview + "?expr=" + encodeURIComponent(input.value) +
      "&tz=" + encodeURIComponent(tz ? tz.value : "");
    const mine = ++asked;
    const res = await fetch(url, { credentials: "same-origin" });
    if (!res.ok) return;
    const body = await res.json();
    // An older answer arriving late must not replace the preview of what is typed now.
    if (mine !== asked) return;
    out.textContent = body.error ? body.error : body.words + "\nNext: " + body.next.join("\n      ");
  }
  const later = () => { clearTimeout(timer); timer = setTimeout(show, 250); };
  input.addEventListener("input", later);
  if (tz) tz.addEventListener("input", later);
  show();
}

// Countdowns to incidents' next due update, kept current without a reload.
function countdowns() {
  const words = (ms) => {
    const min = Math.round(Math.abs(ms) / 60000);
    const span = min < 90 ? min + " min" : Math.round(min / 60) + " h";
    return ms >= 0 ? "in " + span : "overdue by " + span;
  };
  const tick = () => document.querySelectorAll("[data-due]").forEach((el) => {
    const ms = Date.parse(el.dataset.due) - Date.now();
    if (!Number.isNaN(ms)) el.textContent = words(ms);
  });
  setInterval(tick, 30000);
}

document.addEventListener("DOMContentLoaded", () => {
  countdowns();
  const box = document.getElementById("checks");
  if (box && box.dataset.stream) liveTable(box);
  document.querySelectorAll("[data-cron-preview]").forEach(cronPreview);
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (e) => {
      if (!confirm(form.dataset.confirm)) e.preventDefault();
    });
  });
});
