"use strict";
(function () {
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const $ = (id) => document.getElementById(id);
  const METRIC_ORDER = ["R@1", "R@5", "R@10", "MdR", "MnR", "num_queries", "censored"];
  const state = { page: 1, per: 20, filter: "", misses: false };

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  const COUNTS = ["num_queries", "censored"];
  const fmt = (key, x) => (typeof x !== "number" ? String(x) : COUNTS.includes(key) ? String(x) : x.toFixed(1));

  // ---- header and evaluation summary -------------------------------------------------------
  function facts() {
    const parts = [data.queries.length + " queries", data.num_videos + " indexed videos",
                   "top " + data.top_n + " shown"];
    if (data.recall_k) parts.push("recall k = " + data.recall_k);
    if (data.model_id) parts.push("model " + data.model_id);
    $("facts").textContent = parts.join(" \u00b7 ");
  }

  // Rows of the metrics table: every object of numbers in the evaluation JSON, at any depth
  // (so new metric groups, e.g. video-to-text, show up without changes here).
  function metricRows(obj, label, rows) {
    if (Array.isArray(obj)) {
      obj.forEach((item, i) => {
        if (item && typeof item === "object") {
          const name = item.recall_k !== undefined ? label + " (k = " + item.recall_k + ")" : label + " " + (i + 1);
          metricRows(item, name, rows);
        }
      });
      return rows;
    }
    if (!obj || typeof obj !== "object") return rows;
    const numbers = {};
    const nested = [];
    for (const [key, value] of Object.entries(obj)) {
      if (typeof value === "number") numbers[key] = value;
      else if (value && typeof value === "object" && !key.endsWith("_ranks") && key !== "plots") nested.push([key, value]);
    }
    const metricKeys = Object.keys(numbers).filter((k) => /^(R@|MdR|MnR|num_queries|censored)|recall|median|mean/i.test(k));
    if (metricKeys.length && label) rows.push([label, numbers]);
    for (const [key, value] of nested) metricRows(value, label ? label + " / " + key : key, rows);
    return rows;
  }

  function summary() {
    const metrics = data.metrics || {};
    // With video-to-text groups present, name the top-level (text-to-video) ones as such.
    const rows = metricRows(metrics, "", []).map(([label, values]) =>
      ["v2t" in metrics && !label.includes(" / ") && !label.startsWith("v2t") ? "t2v / " + label : label, values]);
    if (!rows.length && !(data.plots || []).length) return;
    $("summary").hidden = false;
    if (rows.length) {
      const cols = [];
      for (const [, values] of rows) for (const key of Object.keys(values))
        if (!cols.includes(key) && (METRIC_ORDER.includes(key) || /^R@/.test(key))) cols.push(key);
      cols.sort((a, b) => {
        const ia = METRIC_ORDER.indexOf(a), ib = METRIC_ORDER.indexOf(b);
        return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || a.localeCompare(b);
      });
      const table = el("table", "metrics");
      const head = table.createTHead().insertRow();
      head.appendChild(el("th", null, "order"));
      cols.forEach((c) => head.appendChild(el("th", null, c.replace("num_queries", "queries"))));
      const body = table.createTBody();
      for (const [label, values] of rows) {
        const tr = body.insertRow();
        tr.appendChild(el("td", null, label));
        cols.forEach((c) => tr.appendChild(el("td", null, c in values ? fmt(c, values[c]) : "")));
      }
      $("metrics").appendChild(table);
    }
    for (const src of data.plots || []) {
      const img = el("img");
      img.src = src;
      img.alt = src.split("/").pop();
      $("plots").appendChild(img);
    }
  }

  // ---- one query ---------------------------------------------------------------------------
  function truthStatus(q) {
    if (!q.truth || !q.truth.length) return null;
    if (q.truth_rank === null || q.truth_rank === undefined)
      return ["bad", "ground truth " + q.truth.join(", ") + " is not in the " + q.list_length + " listed results"];
    const coarse = q.truth_coarse_rank ? " (coarse rank " + q.truth_coarse_rank + ")" : "";
    const cls = q.truth_rank === 1 ? "good" : q.truth_rank <= data.top_n ? "warn" : "bad";
    return [cls, "ground truth at rank " + q.truth_rank + coarse];
  }

  function card(r) {
    const c = el("div", "card" + (r.truth ? " truth" : ""));
    c.dataset.videoId = r.video_id;
    c.dataset.rank = r.rank;
    if (r.truth) c.appendChild(el("div", "truthbadge", "\u2713 ground truth"));
    const wrap = el("div", "thumbwrap");
    if (r.thumb) {
      const img = el("img", "thumb");
      img.src = r.thumb;
      img.alt = r.video_id;
      img.decoding = "async";
      wrap.appendChild(img);
    } else {
      wrap.appendChild(el("div", "nopreview", "no preview"));
    }
    wrap.appendChild(el("span", "rank", "#" + r.rank));
    const frames = r.gate ? r.gate.length : 0;
    if (r.strip && frames && r.gate_frame !== null) {
      const inset = el("div", "gateframe");
      inset.title = "frame the text gate weighted most";
      inset.style.backgroundImage = "url(\"" + r.strip + "\")";
      inset.style.backgroundSize = (frames * 100) + "% 100%";
      inset.style.backgroundPosition = (frames > 1 ? (100 * r.gate_frame / (frames - 1)) : 0) + "% 0";
      wrap.appendChild(inset);
    }
    c.appendChild(wrap);
    const vid = el("div", "vid", r.video_id);
    vid.title = r.video_id;
    c.appendChild(vid);
    const scores = el("div", "scores");
    const s1 = el("span", null, "score ");
    s1.appendChild(el("b", null, r.score.toFixed(2)));
    scores.appendChild(s1);
    scores.appendChild(el("span", null, "coarse " + r.coarse_score.toFixed(2)));
    c.appendChild(scores);
    const delta = r.coarse_rank - r.rank;
    const move = el("div", "move " + (delta > 0 ? "up" : delta < 0 ? "down" : "same"),
                    "coarse " + r.coarse_rank + " \u2192 " + r.rank +
                    (delta > 0 ? "  \u25b2" + delta : delta < 0 ? "  \u25bc" + (-delta) : "  ="));
    move.title = "rank in the coarse (S_V) order of the listed results \u2192 final rank";
    c.appendChild(move);
    if (r.strip || frames) {
      const strip = el("div", "strip");
      if (r.strip) {
        const img = el("img", "stripimg");
        img.src = r.strip;
        img.alt = "sampled frames of " + r.video_id;
        strip.appendChild(img);
      }
      if (frames && r.gate_frame !== null && r.strip) {
        const hl = el("div", "hl");
        hl.style.left = (100 * r.gate_frame / frames) + "%";
        hl.style.width = (100 / frames) + "%";
        strip.appendChild(hl);
      }
      c.appendChild(strip);
    }
    if (frames) {
      const bars = el("div", "bars");
      const top = Math.max(...r.gate);
      r.gate.forEach((w, t) => {
        const b = el("span", t === r.gate_frame ? "max" : "");
        b.style.height = Math.max(6, 100 * w / (top || 1)) + "%";
        b.title = "frame " + (t + 1) + ": gate weight " + w.toFixed(3);
        bars.appendChild(b);
      });
      c.appendChild(bars);
      const info = el("div", "gateinfo", "gate \u25b8 frame " + (r.gate_frame + 1) + "/" + frames +
                      " (" + (100 * r.gate[r.gate_frame]).toFixed(0) + "%)");
      info.title = "the sampled frame the text gate of the frame TIB weighted most, and its weight";
      c.appendChild(info);
    }
    return c;
  }

  function querySection(q) {
    const s = el("section", "query");
    s.dataset.queryId = q.id;
    const h = el("h3");
    h.appendChild(el("span", "qid", q.id));
    h.appendChild(document.createTextNode(q.text));
    s.appendChild(h);
    const status = truthStatus(q);
    if (status) s.appendChild(el("div", "status " + status[0], status[1]));
    const cards = el("div", "cards");
    q.results.forEach((r) => cards.appendChild(card(r)));
    s.appendChild(cards);
    return s;
  }

  // ---- filtering and paging ----------------------------------------------------------------
  function visible() {
    const needle = state.filter.trim().toLowerCase();
    return data.queries.filter((q) =>
      (!needle || q.text.toLowerCase().includes(needle) || q.id.toLowerCase().includes(needle)) &&
      (!state.misses || (q.truth && q.truth.length && q.truth_rank !== 1)));
  }
  function numPages() {
    return state.per ? Math.max(1, Math.ceil(visible().length / state.per)) : 1;
  }
  function show(page) {
    const list = visible();
    const pages = state.per ? Math.max(1, Math.ceil(list.length / state.per)) : 1;
    state.page = Math.min(Math.max(1, page), pages);
    const first = state.per ? (state.page - 1) * state.per : 0;
    const slice = state.per ? list.slice(first, first + state.per) : list;
    const box = $("queries");
    box.replaceChildren(...slice.map(querySection));
    if (!slice.length) box.appendChild(el("p", "empty", "no query matches"));
    $("page-info").textContent = list.length
      ? "queries " + (first + 1) + "\u2013" + (first + slice.length) + " of " + list.length + " \u00b7 page " + state.page + "/" + pages
      : "0 queries";
    $("prev").disabled = state.page <= 1;
    $("next").disabled = state.page >= pages;
    const hash = "page=" + state.page + "&per=" + state.per;
    if (location.hash.slice(1) !== hash) history.replaceState(null, "", "#" + hash);
    return slice.map((q) => q.id);
  }

  function init() {
    facts();
    summary();
    const params = new URLSearchParams(location.hash.slice(1));
    if (params.has("per")) state.per = Math.max(0, parseInt(params.get("per"), 10) || 0);
    const select = $("per-page");
    if (![...select.options].some((o) => Number(o.value || o.textContent) === state.per)) {
      select.add(new Option(String(state.per), String(state.per)));
    }
    select.value = String(state.per);
    if (data.queries.some((q) => q.truth && q.truth.length)) $("miss-label").hidden = false;
    const legend = ["score = rerank score (S_V after the reranked block)", "coarse = S_V",
                    "coarse a \u2192 b: rank before and after the rerank"];
    if (data.has_gate) legend.push("blue box / bars: the frame the text gate (frame TIB) weighted most, inset bottom right");
    if (data.queries.some((q) => q.truth && q.truth.length)) legend.push("green card: ground truth");
    $("legend").textContent = legend.join(" \u00b7 ");
    select.addEventListener("change", () => { state.per = Number(select.value); show(1); });
    $("filter").addEventListener("input", (e) => { state.filter = e.target.value; show(1); });
    $("misses").addEventListener("change", (e) => { state.misses = e.target.checked; show(1); });
    $("prev").addEventListener("click", () => { show(state.page - 1); window.scrollTo(0, 0); });
    $("next").addEventListener("click", () => { show(state.page + 1); window.scrollTo(0, 0); });
    show(parseInt(params.get("page"), 10) || 1);
    window.eercfReport = { numPages, show, queryIds: () => data.queries.map((q) => q.id) };
    document.body.dataset.ready = "1";
  }
  init();
})();
