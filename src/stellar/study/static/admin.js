// Admin page of `stellar study serve`: progress per rater and aspect, gold accuracy, flags.
"use strict";
(function () {
  const KEY = "stellar-study-admin:" + location.host;
  const $ = (id) => document.getElementById(id);
  let token = null, timer = null;
  const fmt = (v, d) => (v === null || v === undefined) ? "–" : Number(v).toFixed(d);
  function fail(msg) { const e = $("error"); e.textContent = msg; e.hidden = !msg; }
  function cell(tr, text, tag) { const td = document.createElement(tag || "td"); td.textContent = text; tr.appendChild(td); }
  async function refresh() {
    const r = await fetch("/api/admin", { headers: { Authorization: "Bearer " + token } });
    const s = await r.json().catch(() => ({}));
    if (!r.ok) {
      fail(s.error || ("HTTP " + r.status));
      if (r.status === 401) { localStorage.removeItem(KEY); $("token-form").hidden = false; $("summary").hidden = true; clearInterval(timer); }
      return;
    }
    fail(""); $("token-form").hidden = true; $("summary").hidden = false;
    const pct = s.judgements_planned ? 100 * s.judgements / s.judgements_planned : 0;
    $("totals").textContent = s.judgements + " of " + s.judgements_planned + " judgements (" + pct.toFixed(1) + " %) — pairs complete " +
      s.pairs_complete + "/" + s.pairs + ", started " + s.pairs_started + "; " + s.raters_per_pair + " raters per pair";
    $("bar-fill").style.width = pct + "%";
    const aspects = Object.keys(s.answers_per_aspect);
    $("aspects").textContent = "Answers per aspect: " + aspects.map((a) => a + " " + s.answers_per_aspect[a]).join(", ");
    const head = $("head"); head.textContent = "";
    for (const h of ["rater", "items", ...aspects, "gold", "gold accuracy", "repeat consistency", "median time (s)"]) cell(head, h, "th");
    const rows = $("rows"); rows.textContent = "";
    for (const x of s.raters) {
      const tr = document.createElement("tr"); if (x.flagged) tr.className = "flagged";
      cell(tr, x.rater + (x.flagged ? " ⚑" : "")); cell(tr, x.items);
      for (const a of aspects) cell(tr, x.per_aspect[a]);
      cell(tr, x.gold_correct + "/" + x.gold_n); cell(tr, fmt(x.gold_accuracy, 2)); cell(tr, fmt(x.repeat_consistency, 2)); cell(tr, fmt(x.median_time_s, 1));
      rows.appendChild(tr);
    }
    $("flagged").textContent = "Flagged (gold accuracy below " + s.gold_threshold.toFixed(2) + "): " + (s.flagged.length ? s.flagged.join(", ") : "none");
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  }
  function open(t) { token = t; localStorage.setItem(KEY, t); refresh(); clearInterval(timer); timer = setInterval(refresh, 5000); }
  $("token-form").addEventListener("submit", (ev) => { ev.preventDefault(); open($("token").value.trim()); });
  const m = /[#&]token=([A-Za-z0-9._-]+)/.exec(location.hash);
  if (m) history.replaceState(null, "", location.pathname);
  const t = m ? m[1] : localStorage.getItem(KEY);
  if (t) open(t); else $("token-form").hidden = false;
})();
