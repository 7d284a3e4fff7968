// The bertsearch web console: plain JavaScript over the service's own API (/search, /explain,
// /events, /reports); nothing is loaded from another origin.
"use strict";

const $ = (selector) => document.querySelector(selector);
const STAGES = ["bm25", "dense", "rrf", "rerank", "blend"];
let answer = null; // the last /search answer
let lastQuery = "";

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

async function api(path, body) {
  const response = await fetch(path, body === undefined ? {} : {
    method: "POST", headers: {"content-type": "application/json"}, body: JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail || data);
    throw new Error(`${response.status}: ${detail}`);
  }
  return data;
}

function showError(error) {
  const box = $("#error");
  box.hidden = !error;
  box.textContent = error ? String(error.message || error) : "";
}

// -- search ---------------------------------------------------------------------------------

const STOP_WORDS = new Set(["and", "are", "but", "for", "from", "has", "how", "into", "not", "that", "the",
  "their", "then", "there", "these", "this", "was", "what", "when", "where", "which", "who", "why", "will", "with"]);

function queryWords(query) {
  // What is highlighted: query words of 3+ letters, stop words aside, matched by their first 5
  // letters (a rough stand-in for the analyzer's stemming; /explain shows the terms that matched).
  const words = (query.toLowerCase().match(/[\p{L}\p{N}]{3,}/gu) || []).filter((w) => !STOP_WORDS.has(w));
  return [...new Set(words)].map((w) => w.slice(0, 5));
}

function highlighted(text, words) {
  const out = document.createDocumentFragment();
  let last = 0;
  for (const match of text.matchAll(/[\p{L}\p{N}]+/gu)) {
    const word = match[0].toLowerCase();
    if (words.some((w) => word.startsWith(w))) {
      out.append(text.slice(last, match.index), el("mark", {text: match[0]}));
      last = match.index + match[0].length;
    }
  }
  out.append(text.slice(last));
  return out;
}

function stageBars(hit, ranges) {
  // Each stage's score as a bar, min-max scaled over the hits shown (logits can be negative).
  const bars = el("div", {class: "bars"});
  for (const stage of STAGES) {
    if (!(stage in hit.scores)) continue;
    const value = hit.scores[stage];
    const [low, high] = ranges[stage];
    const share = high > low ? 0.05 + 0.95 * (value - low) / (high - low) : 1;
    const bar = el("div", {class: "bar"}, el("span", {style: `width:${(100 * share).toFixed(1)}%`}));
    bars.append(el("span", {text: stage}), bar, el("span", {class: "num", text: value.toFixed(3)}));
  }
  return bars;
}

function renderAnswer(data) {
  const meta = $("#answer-meta");
  meta.hidden = false;
  meta.replaceChildren();
  const rerank = data.rerank;
  const coverage = rerank ? `reranked ${rerank.scored}/${rerank.requested} in ${rerank.spent_ms.toFixed(0)} ms`
    : "not reranked";
  const timings = Object.entries(data.timings_ms).map(([k, v]) => `${k} ${v.toFixed(1)} ms`).join(" · ");
  meta.append(`${data.hits.length} hits · ${coverage} · ${timings}`);
  if (data.degraded) meta.append(" · ", el("span", {class: "degraded", text: `degraded: ${data.degraded_reasons.join(", ")}`}));
  for (const note of data.notes || []) meta.append(el("div", {text: note}));

  const ranges = {};
  for (const hit of data.hits) for (const [stage, value] of Object.entries(hit.scores)) {
    const [low, high] = ranges[stage] || [value, value];
    ranges[stage] = [Math.min(low, value), Math.max(high, value)];
  }
  const words = queryWords(lastQuery);
  const list = $("#hits");
  list.replaceChildren();
  data.hits.forEach((hit, index) => {
    const title = el("a", {class: "title", href: `/documents/${encodeURIComponent(hit.id)}`, target: "_blank"},
      hit.title || hit.id);
    title.addEventListener("click", () => sendClick(hit, index + 1));
    const explainButton = el("button", {type: "button", class: "explain-button", text: "explain"});
    explainButton.addEventListener("click", () => explainHit(hit));
    const item = el("li", {class: "hit", "data-id": hit.id},
      el("div", {}, title, el("span", {class: "id", text: hit.id}), " ", explainButton),
      el("p", {class: "snippet"}, highlighted(hit.snippet, words)),
      stageBars(hit, ranges));
    list.append(item);
  });
}

async function search(event) {
  event.preventDefault();
  lastQuery = $("#query").value;
  const body = {query: lastQuery, top_k: Number($("#top-k").value) || 10};
  if (!$("#rerank").checked) body.stages = {rerank: false};
  showError(null);
  $("#explain").hidden = true;
  try {
    answer = await api("/search", body);
    renderAnswer(answer);
  } catch (error) {
    showError(error);
  }
}

function sendClick(hit, position) {
  if (!answer || !answer.query_id) return; // the service logs no feedback
  const event = {query_id: answer.query_id, action_name: "click", object_id: hit.id, position,
                 client_id: "console"};
  // keepalive: the click is sent even though the link opens a new page
  fetch("/events", {method: "POST", headers: {"content-type": "application/json"}, keepalive: true,
                    body: JSON.stringify({events: [event]})}).catch(() => {});
}

// -- explain --------------------------------------------------------------------------------

function heatMap(text, words) {
  const scale = Math.max(1e-9, ...words.map((w) => Math.abs(w.score)));
  const out = el("div", {class: "heat"});
  let last = 0;
  for (const word of words) {
    out.append(text.slice(last, word.start));
    const strength = Math.abs(word.score) / scale;
    const color = word.score >= 0 ? "var(--up)" : "var(--down)";
    out.append(el("span", {class: "attribution", title: word.score.toFixed(4),
                           style: `background: rgba(${color}, ${(0.85 * strength).toFixed(3)})`,
                           text: text.slice(word.start, word.end)}));
    last = word.end;
  }
  out.append(text.slice(last));
  return out;
}

async function explainHit(hit) {
  for (const item of document.querySelectorAll(".hit")) item.classList.toggle("selected", item.dataset.id === hit.id);
  const panel = $("#explain");
  panel.hidden = false;
  panel.replaceChildren(el("h2", {text: `Explaining ${hit.title || hit.id}`}), el("p", {text: "computing…"}));
  const body = {query: lastQuery, id: hit.id};
  if (!$("#rerank").checked) body.stages = {rerank: false};
  try {
    renderExplanation(panel, await api("/explain", body));
  } catch (error) {
    panel.replaceChildren(el("div", {class: "error", text: String(error.message || error)}));
  }
}

function renderExplanation(panel, data) {
  const rows = Object.entries(data.stages).map(([stage, view]) => el("tr", {},
    el("td", {text: stage}), el("td", {class: "num", text: view.score.toFixed(4)}),
    el("td", {class: "num", text: `${view.rank} / ${view.of}`}),
    el("td", {class: "num", text: view.rrf_contribution ? `+${view.rrf_contribution.toFixed(4)}` : ""})));
  const stages = el("table", {class: "stages"},
    el("tr", {}, el("th", {text: "stage"}), el("th", {text: "score"}), el("th", {text: "rank"}),
       el("th", {text: "RRF share"})), ...rows);
  panel.replaceChildren(
    el("h2", {text: `#${data.final_rank ?? "–"} ${data.title || data.id}`}),
    el("p", {class: "legend", text: `final score ${data.final_score?.toFixed(4) ?? "–"} among ${data.candidates} candidates`
      + (data.rerank_weight != null ? ` · rerank weight ${data.rerank_weight}, top ${data.rerank_top_n}` : "")
      + ` · ${data.ms.total.toFixed(0)} ms`}),
    el("h3", {text: "Stages"}), stages);
  panel.append(el("h3", {text: "Matched terms (BM25)"}));
  if (data.matched_terms.length) {
    panel.append(el("table", {class: "terms"},
      el("tr", {}, el("th", {text: "term"}), el("th", {text: "BM25"}), el("th", {text: "in"})),
      ...data.matched_terms.map((m) => el("tr", {}, el("td", {text: m.term}),
        el("td", {class: "num", text: m.score.toFixed(3)}), el("td", {text: m.fields.join(", ") || m.field})))));
  } else {
    panel.append(el("p", {class: "legend", text: "no query term matched this document"}));
  }
  const words = data.attributions;
  panel.append(el("h3", {text: "Why the reranker scored it so"}));
  if (!words) {
    panel.append(el("p", {class: "legend", text: "no reranker ran: nothing to attribute"}));
    return;
  }
  panel.append(
    el("p", {class: "legend", text: `reranker logit ${words.score.toFixed(3)} (a text without words: `
      + `${words.reference_score.toFixed(3)}); integrated gradients, ${words.steps} steps, ${words.ms.toFixed(0)} ms.`
      + " Red pushed the score up, blue down."}),
    el("p", {class: "legend", text: "query"}), heatMap(data.query, words.query),
    el("p", {class: "legend", text: "document"}),
    heatMap(data.passage, words.document));
  if (words.truncated) panel.append(el("p", {class: "legend", text: "the pair was cut to the model's length"}));
}

// -- reports --------------------------------------------------------------------------------

async function loadReports() {
  const list = $("#report-list");
  list.replaceChildren();
  try {
    const data = await api("/reports");
    if (!data.configured) {
      list.append(el("li", {text: "No reports folder: start the service with BERTSEARCH_REPORTS_DIR."}));
      return;
    }
    if (!data.reports.length) list.append(el("li", {text: "No evaluation reports yet (bertsearch eval --out …)."}));
    for (const report of data.reports) {
      const item = el("li", {class: "report-item", "data-name": report.name},
        report.name, el("small", {text: `${report.dataset} / ${report.split} · ${report.queries} queries · `
          + `${report.configs.join(", ")} · ${report.created_at || ""}`}));
      item.addEventListener("click", () => showReport(report.name));
      list.append(item);
    }
  } catch (error) {
    list.append(el("li", {text: String(error.message || error)}));
  }
}

async function showReport(name) {
  const target = $("#report");
  const data = await api(`/reports/${name.split("/").map(encodeURIComponent).join("/")}`);
  const metrics = data.metrics;
  const comparisons = Object.fromEntries(data.comparisons.map((c) => [c.name, c]));
  const header = el("tr", {}, el("th", {text: "configuration"}), ...metrics.map((m) => el("th", {text: m})));
  const rows = data.configs.map((config) => el("tr", {}, el("td", {text: config.name}), ...metrics.map((m) => {
    const compared = comparisons[config.name];
    const mark = compared && compared.significant[m] ? " †" : "";
    return el("td", {class: "num", text: config.means[m].toFixed(4) + mark});
  })));
  target.replaceChildren(
    el("h2", {text: name}),
    el("p", {class: "legend", text: `${data.dataset.name} / ${data.dataset.split}, ${data.dataset.queries} queries; `
      + `† significant against ${data.configs[0]?.name} (${data.stat_test}, p < ${data.max_p})`}),
    el("table", {class: "metrics"}, header, ...rows));
  for (const plot of data.plots) {
    const src = `/plots?report=${encodeURIComponent(name)}&file=${encodeURIComponent(plot)}`;
    target.append(el("h3", {text: plot.replace(/\.png$/, "")}), el("img", {src, alt: plot}));
  }
}

// -- page -----------------------------------------------------------------------------------

function switchTo(view) {
  for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.dataset.view === view);
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== view;
  if (view === "reports-view") loadReports();
}

async function status() {
  try {
    const ready = await api("/readyz");
    $("#status").textContent = `index ${ready.index_version} · ${ready.documents} documents · ${ready.stage}`;
  } catch (error) {
    $("#status").textContent = `not ready (${error.message})`;
  }
}

$("#search-form").addEventListener("submit", search);
for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => switchTo(tab.dataset.view));
status();
