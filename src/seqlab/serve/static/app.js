// The seqlab G2P page: send the typed words to /api/g2p, show phones and an attention heatmap per word.
// No libraries: the page must work offline. User text only ever goes into textContent, never into HTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const CELL = 24;  // heatmap cell size, px

const $ = (id) => document.getElementById(id);

// Split typed text into words; punctuation at the ends of a word ("world!") is dropped, inner ' and - stay.
function words(text) {
  return text.split(/\s+/)
    .map((w) => w.replace(/^[^\p{L}\p{N}'-]+|[^\p{L}\p{N}'-]+$/gu, ""))
    .filter((w) => w.length > 0);
}

function el(tag, attrs = {}, text = null, ns = null) {
  const node = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== null) node.textContent = text;
  return node;
}

// White (weight 0) to dark blue (weight 1).
function colour(w) {
  const t = Math.max(0, Math.min(1, w));
  const mix = (a, b) => Math.round(a + (b - a) * t);
  return `rgb(${mix(255, 8)}, ${mix(255, 48)}, ${mix(255, 107)})`;
}

// One heatmap: rows are the output phones and </s>, columns the input letters.
function heatmap(part) {
  const letters = Array.from(part.letters);
  const rows = [...part.phones, "</s>"];
  const left = 44, top = 22;
  const width = left + letters.length * CELL + 2, height = top + rows.length * CELL + 2;
  const svg = el("svg", {
    class: "heatmap", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `attention of ${part.letters}`, "data-rows": rows.length, "data-cols": letters.length,
  }, null, SVG);
  letters.forEach((ch, j) => {
    svg.appendChild(el("text", { x: left + j * CELL + CELL / 2, y: top - 7, "text-anchor": "middle" }, ch, SVG));
  });
  rows.forEach((ph, i) => {
    svg.appendChild(el("text", { x: left - 5, y: top + i * CELL + CELL / 2 + 4, "text-anchor": "end" }, ph, SVG));
    letters.forEach((ch, j) => {
      const w = part.attention[i][j];
      const rect = el("rect", {
        class: "cell", x: left + j * CELL, y: top + i * CELL, width: CELL - 1, height: CELL - 1,
        fill: colour(w), "data-weight": w,
      }, null, SVG);
      rect.appendChild(el("title", {}, `${ph} ← ${ch}: ${w.toFixed(3)}`, SVG));
      svg.appendChild(rect);
    });
  });
  return svg;
}

function show(results) {
  const box = $("results");
  box.replaceChildren();
  for (const r of results) {
    const card = el("section", { class: "result", "data-word": r.word });
    card.appendChild(el("h2", {}, r.word));
    card.appendChild(el("p", { class: "phones" }, r.phones.join(" ")));
    card.appendChild(el("p", { class: "score" },
      `P(phones | word) = ${(100 * Math.exp(r.score)).toFixed(1)}%  (log ${r.score.toFixed(3)})`));
    for (const part of r.parts) {
      if (part.attention) card.appendChild(heatmap(part));
    }
    if (r.parts.some((p) => p.attention)) {
      card.appendChild(el("p", { class: "caption" }, "rows: phones, columns: letters; darker = more attention"));
    }
    box.appendChild(card);
  }
}

function fail(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
}

async function pronounce(text) {
  const list = words(text);
  $("error").hidden = true;
  if (list.length === 0) {
    fail("Type a word first.");
    return;
  }
  $("status").textContent = "…";
  try {
    const response = await fetch("/api/g2p", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ words: list }),
    });
    const body = await response.json();
    if (!response.ok) {
      fail(body.hint ? `${body.error} (${body.hint})` : body.error);
      $("status").textContent = "";
      return;
    }
    show(body.results);
    $("status").textContent = `${body.results.length} word${body.results.length === 1 ? "" : "s"}, beam ${body.beam}`;
  } catch (err) {
    fail(`The server did not answer: ${err}`);
    $("status").textContent = "";
  }
}

async function init() {
  $("form").addEventListener("submit", (event) => {
    event.preventDefault();
    pronounce($("text").value);
  });
  try {
    const info = await (await fetch("/api/info")).json();
    for (const word of info.examples) {
      const button = el("button", { type: "button", class: "example" }, word);
      button.addEventListener("click", () => {
        $("text").value = word;
        pronounce(word);
      });
      $("examples").appendChild(button);
    }
    const m = info.model;
    const dev = m.dev && m.dev.wer !== undefined ? `, dev WER ${(100 * m.dev.wer).toFixed(1)}%` : "";
    const kind = m.ensemble_members ? `ensemble of ${m.ensemble_members} models, ` : "";
    $("model").textContent = `model: ${m.checkpoint} (${kind}${m.parameters.toLocaleString("en")} parameters${dev}); ` +
      `up to ${info.max_words} words per request, ${info.max_word_length} letters per word.`;
    document.body.dataset.ready = "true";
  } catch (err) {
    fail(`The server did not answer: ${err}`);
  }
}

init();
