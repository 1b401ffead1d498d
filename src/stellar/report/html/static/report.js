/* Stellar-Bench HTML report: the gallery (filters, sorting, pages, enlarged images).
 *
 * Data arrive as <script> files that call window.__stellarChunk(kind, k, data) (fetch() of local
 * files is blocked from file://, script tags are not). data/meta.js starts the page; row chunks
 * are loaded for the page shown, or all of them once a filter or sort needs every row; detail
 * chunks only when an image is enlarged.
 *
 * Row format (see builder.py): [name, subject, kind, [category ids], photo thumb id,
 *   per run: [status code, thumb id, followed (1/0/null), goa query not found (1/0), ...metrics],
 *   prompt text]. Detail chunks (loaded when an image is enlarged): face boxes, errors, GOA, RFS.
 */
(function () {
  'use strict';
  var S = {
    meta: null, chunks: { rows: {}, detail: {} }, pending: {}, all: false,
    view: null, page: 0, size: 20, special: null, loading: false,
  };
  var $ = function (id) { return document.getElementById(id); };
  var RUN_FIXED = 4; // fields before the metrics in a per-run record

  window.__stellarChunk = function (kind, k, data) {
    if (kind === 'meta') { S.meta = data; init(); return; }
    S.chunks[kind][k] = data;
    var p = S.pending[kind + ':' + k];
    if (p) { delete S.pending[kind + ':' + k]; p.resolve(data); }
  };

  function load(kind, k) {
    if (S.chunks[kind][k]) return Promise.resolve(S.chunks[kind][k]);
    var key = kind + ':' + k;
    if (S.pending[key]) return S.pending[key].promise;
    var entry = {};
    entry.promise = new Promise(function (resolve, reject) { entry.resolve = resolve; entry.reject = reject; });
    S.pending[key] = entry;
    var s = document.createElement('script');
    s.src = 'data/' + kind + '-' + String(k).padStart(5, '0') + '.js';
    s.onload = function () { s.remove(); };
    s.onerror = function () { delete S.pending[key]; s.remove(); entry.reject(new Error('cannot load ' + s.src)); };
    document.head.appendChild(s);
    return entry.promise;
  }

  function rowAt(i) {
    var c = S.chunks.rows[Math.floor(i / S.meta.chunk_rows)];
    return c ? c[i % S.meta.chunk_rows] : null;
  }
  function detailAt(i) {
    var c = S.chunks.detail[Math.floor(i / S.meta.chunk_rows)];
    return c ? c[i % S.meta.chunk_rows] : null;
  }
  function loadAll() {
    if (S.all) return Promise.resolve();
    var n = S.meta.n_chunks, done = 0, jobs = [];
    for (var k = 0; k < n; k++) {
      jobs.push(load('rows', k).then(function () {
        done++;
        $('g-status').textContent = 'loading gallery data ' + done + '/' + n + '…';
      }));
    }
    return Promise.all(jobs).then(function () { S.all = true; });
  }

  function thumbSrc(id) {
    return id ? 'thumbs/' + id.slice(0, 2) + '/' + id + '-' + S.meta.thumb_size + '.jpg' : null;
  }
  function fmt(v) { return v === null || v === undefined ? '–' : Number(v).toFixed(4); }
  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) { return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]; });
  }
  function opt(sel, value, text) {
    var o = document.createElement('option'); o.value = value; o.textContent = text; sel.appendChild(o);
  }

  // ------------------------------------------------------------------------------- filters, sort
  function filters() {
    var runSel = $('f-run').value;
    var mn = $('f-min').value, mx = $('f-max').value;
    return {
      subject: $('f-subject').value.trim(),
      kind: $('f-kind').value,
      category: $('f-category').value,
      status: $('f-status').value,
      run: runSel === '' ? -1 : Number(runSel),
      metric: $('f-metric').value,
      min: mn === '' ? null : Number(mn),
      max: mx === '' ? null : Number(mx),
      sort: $('f-sort').value,
      desc: $('f-desc').checked,
    };
  }
  function isDefault(f) {
    return !f.subject && !f.kind && !f.category && f.status === '' && f.min === null && f.max === null && !f.sort && !S.special;
  }
  function metricIndex(m) { return S.meta.metrics.indexOf(m); }
  function runsOf(f) {
    if (f.run >= 0) return [f.run];
    var all = []; for (var i = 0; i < S.meta.runs.length; i++) all.push(i); return all;
  }
  function passes(row, f) {
    if (f.subject) {
      var subs = f.subject.split(',').map(function (s) { return s.trim(); });
      if (subs.indexOf(row[1]) < 0) return false;
    }
    if (f.kind && row[2] !== f.kind) return false;
    if (f.category !== '' && row[3].indexOf(Number(f.category)) < 0) return false;
    var runs = runsOf(f);
    if (f.status !== '') {
      var codes = f.status.split(',').map(Number);
      if (!runs.some(function (r) { return codes.indexOf(row[5][r][0]) >= 0; })) return false;
    }
    if (S.special === 'excluded' && !runs.some(function (r) { return row[5][r][2] === 0; })) return false;
    if (S.special === 'goa_not_found' && !runs.some(function (r) { return row[5][r][3] === 1; })) return false;
    if ((f.min !== null || f.max !== null) && f.metric) {
      var mi = metricIndex(f.metric) + RUN_FIXED;
      var ok = runs.some(function (r) {
        var v = row[5][r][mi];
        return v !== null && (f.min === null || v >= f.min) && (f.max === null || v <= f.max);
      });
      if (!ok) return false;
    }
    return true;
  }
  function sortKey(f) {
    if (!f.sort) return null;
    var parts = f.sort.split(':');
    var mi = metricIndex(parts[1]) + RUN_FIXED;
    if (parts[0] === 'run') {
      var r = Number(parts[2]);
      return function (row) { return row[5][r][mi]; };
    }
    var reduce = parts[0];
    return function (row) {
      var vals = [];
      for (var r = 0; r < row[5].length; r++) { var v = row[5][r][mi]; if (v !== null) vals.push(v); }
      if (!vals.length) return null;
      var lo = Math.min.apply(null, vals), hi = Math.max.apply(null, vals);
      if (reduce === 'min') return lo;
      return vals.length < 2 ? null : hi - lo; // range: disagreement across runs
    };
  }

  function refresh(resetPage) {
    if (resetPage) S.page = 0;
    var f = filters();
    if (isDefault(f)) {
      S.view = null; // identity order: only the chunks of the page are needed
      return render();
    }
    S.loading = true;
    return loadAll().then(function () {
      var n = S.meta.n_rows, idx = [], i;
      for (i = 0; i < n; i++) if (passes(rowAt(i), f)) idx.push(i);
      var key = sortKey(f);
      if (key) {
        var vals = {};
        idx.forEach(function (j) { vals[j] = key(rowAt(j)); });
        var sign = f.desc ? -1 : 1;
        idx.sort(function (a, b) {
          var va = vals[a], vb = vals[b];
          if (va === null && vb === null) return a - b;
          if (va === null) return 1; // undefined values last in both directions
          if (vb === null) return -1;
          return va === vb ? a - b : sign * (va - vb);
        });
      }
      S.view = idx;
      S.loading = false;
      return render();
    }).catch(showError);
  }

  function showError(err) {
    $('g-status').textContent = 'error: ' + err.message;
    console.error(err);
  }

  // ------------------------------------------------------------------------------------- render
  function total() { return S.view ? S.view.length : S.meta.n_rows; }
  function render() {
    var n = total();
    var pages = Math.max(1, Math.ceil(n / S.size));
    if (S.page >= pages) S.page = pages - 1;
    var start = S.page * S.size, idx = [];
    for (var i = start; i < Math.min(n, start + S.size); i++) idx.push(S.view ? S.view[i] : i);
    var chunks = {};
    idx.forEach(function (j) { chunks[Math.floor(j / S.meta.chunk_rows)] = true; });
    var ks = Object.keys(chunks).map(Number);
    return Promise.all(ks.map(function (k) { return load('rows', k); })).then(function () {
      drawRows(idx);
      $('g-status').textContent = n + ' of ' + S.meta.n_rows + ' jobs' + (S.meta.n_rows < S.meta.n_jobs ? ' (gallery limited to ' + S.meta.n_rows + ' of ' + S.meta.n_jobs + ')' : '');
      $('g-page').textContent = 'page ' + (S.page + 1) + ' / ' + pages;
      $('g-prev').disabled = S.page === 0;
      $('g-next').disabled = S.page >= pages - 1;
      document.body.dataset.ready = '1';
    }).catch(showError);
  }

  function statusName(code) { return S.meta.statuses[code] || String(code); }
  function imageCell(row, i, r) {
    var rec = row[5][r], st = statusName(rec[0]), src = thumbSrc(rec[1]);
    var img = src
      ? '<img loading="lazy" src="' + src + '" alt="' + esc(row[0] + ' ' + S.meta.runs[r]) + '" data-row="' + i + '" data-run="' + r + '">'
      : '<div class="ph" data-row="' + i + '" data-run="' + r + '">' + esc(placeholderText(rec, st)) + '</div>';
    var scores = S.meta.metrics.map(function (m, k) {
      return esc(S.meta.labels[m]) + ' <b data-metric="' + m + '">' + fmt(rec[RUN_FIXED + k]) + '</b>';
    }).join(' · ');
    var excl = rec[2] === 0 ? ' · <span class="st-bad">excluded</span>' : '';
    var goa = rec[3] === 1 ? ' · <span class="st-bad">GOA query not found</span>' : '';
    return '<td class="cell" data-run="' + esc(S.meta.runs[r]) + '" data-status="' + esc(st) + '">' + img +
      '<div class="scores"><span class="st ' + (st === 'ok' ? 'st-ok' : 'st-bad') + '">' + esc(st) + '</span>' + excl + goa + '<br>' + scores + '</div></td>';
  }
  function placeholderText(rec, st) {
    if (st === 'missing') return 'no image (missing)';
    if (st === 'decode_error') return 'undecodable image';
    return 'image not available (moved or deleted since evaluation?)';
  }
  function drawRows(idx) {
    var thead = $('grid').tHead;
    if (!thead.rows.length) {
      thead.innerHTML = '<tr><th>job</th><th>input photo</th>' + S.meta.runs.map(function (r) { return '<th>' + esc(r) + '</th>'; }).join('') + '</tr>';
    }
    var html = idx.map(function (i) {
      var row = rowAt(i);
      var cats = row[3].map(function (c) { return S.meta.categories[c]; }).join(', ');
      var photo = thumbSrc(row[4])
        ? '<img loading="lazy" src="' + thumbSrc(row[4]) + '" alt="input photo ' + esc(row[0]) + '" data-row="' + i + '" data-run="-1">'
        : '<div class="ph">input photo not available</div>';
      return '<tr data-name="' + esc(row[0]) + '" data-row="' + i + '"><td class="job"><b>' + esc(row[0]) + '</b><br>subject ' + esc(row[1]) +
        ' · ' + (row[2] === 'T' ? 'Stellar-T' : 'Stellar-H') + (cats ? '<br>' + esc(cats) : '') + (row[6] ? '<div class="prompt">“' + esc(row[6]) + '”</div>' : '') + '</td>' +
        '<td class="cell">' + photo + '</td>' + row[5].map(function (_, r) { return imageCell(row, i, r); }).join('') + '</tr>';
    }).join('');
    $('grid').tBodies[0].innerHTML = html;
  }

  // -------------------------------------------------------------------------------------- modal
  function openModal(i, r) {
    var row = rowAt(i);
    var k = Math.floor(i / S.meta.chunk_rows);
    load('detail', k).then(function () {
      var d = detailAt(i);
      var frame = $('m-frame');
      frame.querySelectorAll('.fbox').forEach(function (b) { b.remove(); });
      var thumb = r < 0 ? row[4] : row[5][r][1];
      $('m-image').src = thumbSrc(thumb);
      var info = '<h3>' + esc(row[0]) + (r < 0 ? ' · input photo' : ' · ' + esc(S.meta.runs[r])) + '</h3>';
      if (row[6]) info += '<p>“' + esc(row[6]) + '”</p>';
      if (r >= 0) {
        var rec = row[5][r], det = d.runs[r];
        info += '<p>status <b>' + esc(statusName(rec[0])) + '</b>' + (rec[2] === 0 ? ' · excluded by the CLIP rule' : '') + (det.error ? '<br>' + esc(det.error) : '') + '</p>';
        info += '<table>' + S.meta.metrics.map(function (m, j) {
          return '<tr><td>' + esc(S.meta.labels[m]) + '</td><td class="num">' + fmt(rec[RUN_FIXED + j]) + '</td></tr>';
        }).join('') + (det.ips_raw !== null ? '<tr><td>IPS before exclusion</td><td class="num">' + fmt(det.ips_raw) + '</td></tr>' : '') +
          (det.clip_n !== null ? '<tr><td>CLIP-N</td><td class="num">' + fmt(det.clip_n) + '</td></tr>' : '') + '</table>';
        var boxes = det.boxes || [];
        info += '<p>faces detected: ' + (det.nfaces === null ? '–' : det.nfaces) + (boxes.length ? ' (boxes drawn)' : '') + '</p>';
        if (det.size && boxes.length) {
          boxes.forEach(function (b, j) {
            var el = document.createElement('div');
            el.className = 'fbox';
            el.style.left = (100 * b[0] / det.size[0]) + '%';
            el.style.top = (100 * b[1] / det.size[1]) + '%';
            el.style.width = (100 * (b[2] - b[0]) / det.size[0]) + '%';
            el.style.height = (100 * (b[3] - b[1]) / det.size[1]) + '%';
            el.innerHTML = '<span>face ' + (j + 1) + (b.length > 4 ? ' ' + Number(b[4]).toFixed(2) : '') + '</span>';
            frame.appendChild(el);
          });
        }
        if (det.goa) {
          info += '<table><caption>GOA: best score per query (not found &lt; ' + S.meta.goa_threshold + ')</caption>' + Object.keys(det.goa).map(function (q) {
            var v = det.goa[q];
            return '<tr><td>' + esc(q) + '</td><td class="num">' + fmt(v) + '</td><td>' + (det.goa_missing.indexOf(q) >= 0 ? '<span class="st-bad">not found</span>' : '') + '</td></tr>';
          }).join('') + '</table>';
        }
        if (det.rfs && det.rfs.length) {
          info += '<table><caption>RFS: per triplet</caption><tr><th>triplet</th><th>p person</th><th>p object</th><th>p predicate</th><th>score</th></tr>' + det.rfs.map(function (t) {
            var name = Array.isArray(t.triplet) ? t.triplet.join(' · ') : String(t.triplet);
            return '<tr><td>' + esc(name) + '</td><td class="num">' + fmt(t.p_person) + '</td><td class="num">' + fmt(t.p_object) + '</td><td class="num">' + fmt(t.p_predicate) + '</td><td class="num">' + fmt(t.score) + '</td></tr>';
          }).join('') + '</table>';
        }
        if (det.path) info += '<p class="mono">' + esc(det.path) + '</p>';
      } else if (d.photo) {
        info += '<p class="mono">' + esc(d.photo) + '</p>';
      }
      $('m-info').innerHTML = info;
      $('modal').hidden = false;
    }).catch(showError);
  }

  // ------------------------------------------------------------------------------------- set-up
  function preset(kind, run) {
    resetForm();
    S.special = null;
    var reason = '';
    var ri = run === undefined ? -1 : S.meta.runs.indexOf(run);
    $('f-run').value = ri >= 0 ? String(ri) : '';
    var statuses = S.meta.statuses;
    if (kind === 'no_face_generated' || kind === 'decode_error' || kind === 'missing') {
      $('f-status').value = String(statuses.indexOf(kind));
    } else if (kind === 'no_face_reference') {
      ensureStatusOption(['no_face_reference', 'reference_decode_error']);
      $('f-status').value = [statuses.indexOf('no_face_reference'), statuses.indexOf('reference_decode_error')].join(',');
    } else if (kind === 'excluded' || kind === 'goa_not_found') {
      S.special = kind;
    }
    var btn = document.querySelector('.fv[data-view="' + kind + '"]');
    if (btn) reason = btn.closest('.fview').querySelector('h3').textContent + ': ' + btn.closest('.fview').querySelector('p').textContent;
    $('view-reason').hidden = !reason;
    $('view-reason').textContent = reason + (run ? ' (run ' + run + ')' : '');
    return refresh(true);
  }
  function ensureStatusOption(names) {
    var value = names.map(function (s) { return S.meta.statuses.indexOf(s); }).join(',');
    if (!document.querySelector('#f-status option[value="' + value + '"]')) opt($('f-status'), value, names.join(' or '));
  }
  function resetForm() {
    ['f-subject', 'f-min', 'f-max'].forEach(function (id) { $(id).value = ''; });
    ['f-kind', 'f-category', 'f-status', 'f-run', 'f-sort'].forEach(function (id) { $(id).value = ''; });
    $('f-desc').checked = false;
    S.special = null;
    $('view-reason').hidden = true;
  }

  function init() {
    var m = S.meta;
    document.getElementById('gallery').style.setProperty('--thumb', Math.min(m.thumb_size, 160) + 'px');
    m.categories.forEach(function (c, k) { opt($('f-category'), String(k), c); });
    m.statuses.forEach(function (s, k) { opt($('f-status'), String(k), s); });
    m.runs.forEach(function (r, k) { opt($('f-run'), String(k), r); });
    m.metrics.forEach(function (x) { opt($('f-metric'), x, m.labels[x]); });
    opt($('f-sort'), '', 'job order');
    m.metrics.forEach(function (x) {
      m.runs.forEach(function (r, k) { opt($('f-sort'), 'run:' + x + ':' + k, m.labels[x] + ' · ' + r); });
      opt($('f-sort'), 'min:' + x, m.labels[x] + ' · lowest over runs');
      if (m.runs.length > 1) opt($('f-sort'), 'range:' + x, m.labels[x] + ' · range across runs (disagreement)');
    });
    var main = m.metrics.indexOf('ips') >= 0 ? 'ips' : m.metrics[0];
    $('p-disagree').disabled = m.runs.length < 2 || !main;
    $('p-worst').disabled = !main;
    $('p-worst').textContent = main ? 'worst ' + m.labels[main] : 'worst';
    $('p-disagree').addEventListener('click', function () {
      resetForm(); $('f-sort').value = 'range:' + main; $('f-desc').checked = true; refresh(true);
    });
    $('p-worst').addEventListener('click', function () { resetForm(); $('f-sort').value = 'min:' + main; refresh(true); });
    $('p-reset').addEventListener('click', function () { resetForm(); refresh(true); });
    ['f-kind', 'f-category', 'f-status', 'f-run', 'f-metric', 'f-sort', 'f-desc'].forEach(function (id) {
      $(id).addEventListener('change', function () { refresh(true); });
    });
    ['f-subject', 'f-min', 'f-max'].forEach(function (id) {
      $(id).addEventListener('change', function () { refresh(true); });
    });
    $('g-prev').addEventListener('click', function () { S.page--; render(); });
    $('g-next').addEventListener('click', function () { S.page++; render(); });
    $('g-size').addEventListener('change', function () { S.size = Number($('g-size').value); refresh(true); });
    $('grid').addEventListener('click', function (e) {
      var t = e.target;
      if (t.tagName === 'IMG' && t.dataset.row) openModal(Number(t.dataset.row), Number(t.dataset.run));
    });
    $('m-close').addEventListener('click', function () { $('modal').hidden = true; });
    $('modal').addEventListener('click', function (e) { if (e.target === $('modal')) $('modal').hidden = true; });
    document.addEventListener('keydown', function (e) { if (e.key === 'Escape') $('modal').hidden = true; });
    document.querySelectorAll('.fv').forEach(function (b) {
      b.addEventListener('click', function () {
        preset(b.dataset.view, b.dataset.run).then(function () { $('gallery').scrollIntoView(); });
      });
    });
    S.size = Number($('g-size').value);
    refresh(true);
  }

  // a small API for scripted checks (tests, notebooks): the jobs of the current view, in order
  window.stellarReport = {
    state: S,
    refresh: refresh,
    preset: preset,
    viewNames: function () {
      var n = total(), out = [];
      for (var i = 0; i < n; i++) { var row = rowAt(S.view ? S.view[i] : i); out.push(row ? row[0] : null); }
      return out;
    },
  };
})();
