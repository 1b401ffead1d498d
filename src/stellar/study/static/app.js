// Rater page of `stellar study serve`: plain JavaScript, no framework, no network beyond this server.
"use strict";
(function () {
  const KEY = "stellar-study-token:" + location.host;
  const $ = (id) => document.getElementById(id);
  let token = null, aspects = [], item = null, choices = {}, current = 0;
  let shownAt = 0, pausedFor = 0, pausedAt = 0, submission = null, busy = false;

  function show(id) {
    for (const s of ["signin", "task", "paused", "done"]) $(s).hidden = s !== id;
  }
  function fail(msg) { const e = $("error"); e.textContent = msg; e.hidden = !msg; }
  function randomId() {
    const b = new Uint8Array(12); crypto.getRandomValues(b);
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }
  async function api(method, path, body) {
    const opts = { method, headers: {} };
    if (token) opts.headers["Authorization"] = "Bearer " + token;
    if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
    const r = await fetch(path, opts);
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    if (!r.ok) { const err = new Error((data && data.error) || ("HTTP " + r.status)); err.status = r.status; throw err; }
    return data;
  }
  function setProgress(p) {
    if (!p) return;
    const total = p.answered + p.remaining;
    $("progress").hidden = false;
    $("bar-fill").style.width = (total ? (100 * p.answered / total) : 100) + "%";
    $("progress-text").textContent = p.answered + " done, " + p.remaining + " left";
  }
  function renderQuestions() {
    const box = $("questions"); box.textContent = "";
    aspects.forEach((a, i) => {
      const row = document.createElement("div");
      row.className = "q" + (i === current ? " current" : "");
      row.dataset.aspect = a.id;
      const q = document.createElement("div"); q.textContent = a.question; row.appendChild(q);
      const c = document.createElement("div"); c.className = "choices";
      for (const [val, label] of [["a", "A"], ["tie", "Tie"], ["b", "B"]]) {
        const btn = document.createElement("button");
        btn.type = "button"; btn.textContent = label; btn.dataset.choice = val;
        if (choices[a.id] === val) btn.className = "chosen";
        btn.addEventListener("click", () => { current = i; choose(val); });
        c.appendChild(btn);
      }
      row.appendChild(c); box.appendChild(row);
    });
    $("submit").disabled = !aspects.every((a) => choices[a.id]);
  }
  function choose(val) {
    if (!item || busy) return;
    choices[aspects[current].id] = val;
    const next = aspects.findIndex((a, i) => i > current && !choices[a.id]);
    const first = aspects.findIndex((a) => !choices[a.id]);
    current = next >= 0 ? next : (first >= 0 ? first : current);
    renderQuestions();
  }
  function render(data) {
    setProgress(data.progress);
    item = data.item; choices = {}; current = 0; submission = randomId(); busy = false;
    $("status").textContent = "";
    $("task").dataset.item = item ? item.id : "";
    if (!item) { show("done"); return; }
    const refs = $("refs"); refs.textContent = "";
    for (const src of item.references) { const im = document.createElement("img"); im.src = src; im.alt = "input photo"; refs.appendChild(im); }
    $("prompt").textContent = item.prompt;
    $("img-a").src = item.a; $("img-b").src = item.b;
    renderQuestions(); show("task");
    shownAt = performance.now(); pausedFor = 0;
  }
  async function submit() {
    if (!item || busy || !aspects.every((a) => choices[a.id])) return;
    busy = true; $("submit").disabled = true; $("status").textContent = "saving…";
    const body = { item: item.id, answers: choices, submission: submission,
                   time_ms: Math.max(0, Math.round(performance.now() - shownAt - pausedFor)) };
    for (let attempt = 0; ; attempt++) {
      try {
        const data = await api("POST", "/api/answer", body);
        fail(""); render(data); return;
      } catch (e) {
        if (e.status && e.status !== 502 && e.status !== 503) {  // refused: show why, move on to what the server says
          fail(e.message); busy = false; await load(); return;
        }
        $("status").textContent = "server unreachable, retrying… (your answer is kept)";
        await new Promise((r) => setTimeout(r, Math.min(5000, 300 * (attempt + 1))));
      }
    }
  }
  async function undo() {
    if (busy) return;
    busy = true;
    try { const data = await api("POST", "/api/undo", {}); fail(""); render(data); }
    catch (e) { fail(e.message); busy = false; }
  }
  function pause() { if (!item) return; pausedAt = performance.now(); show("paused"); }
  function resume() { if (pausedAt) pausedFor += performance.now() - pausedAt; pausedAt = 0; show(item ? "task" : "done"); }
  async function load() {
    try {
      const data = await api("GET", "/api/next");
      $("rater-name").textContent = "rater " + data.rater; $("who").hidden = false;
      fail(""); render(data);
    } catch (e) {
      if (e.status === 401) { token = null; localStorage.removeItem(KEY); show("signin"); return; }
      fail(e.message);
    }
  }
  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (!$("paused").hidden) { if (ev.key === "p" || ev.key === "P" || ev.key === "Enter") { ev.preventDefault(); resume(); } return; }
    if ($("task").hidden) return;
    const k = ev.key;
    if (k === "a" || k === "A" || k === "ArrowLeft") choose("a");
    else if (k === "b" || k === "B" || k === "ArrowRight") choose("b");
    else if (k === "t" || k === "T" || k === "ArrowDown") choose("tie");
    else if (k === "ArrowUp") { current = Math.max(0, current - 1); renderQuestions(); }
    else if (k === "Enter") submit();
    else if (k === "u" || k === "U") undo();
    else if (k === "p" || k === "P") pause();
    else return;
    ev.preventDefault();
  });
  $("submit").addEventListener("click", submit);
  $("undo").addEventListener("click", undo);
  $("pause").addEventListener("click", pause);
  $("resume").addEventListener("click", resume);
  $("signin-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const data = await api("POST", "/api/login", { rater: $("rater-id").value.trim() });
      token = data.token; localStorage.setItem(KEY, token); await load();
    } catch (e) { fail(e.message); }
  });
  async function start() {
    const m = /[#&]token=([A-Za-z0-9._-]+)/.exec(location.hash);
    if (m) { localStorage.setItem(KEY, m[1]); history.replaceState(null, "", location.pathname); }
    token = localStorage.getItem(KEY);
    try {
      const info = await api("GET", "/api/study");
      aspects = info.aspects;
      if (!info.open_registration) { $("signin-form").hidden = true; $("signin-note").textContent = "This study uses personal links: open the link you were given."; }
    } catch (e) { fail(e.message); return; }
    if (token) await load(); else show("signin");
  }
  start();
})();
