// assoc serve: the page's behaviour, over the JSON API under /api/.
// File names and paths are only ever set as text (textContent, alt, title), never parsed as HTML.
"use strict";

// The server's numbers, handed over in the page's <body> (assoc.web.app fills them in): hits asked for per
// request (scrolling asks for the next page) and the upload limit (assoc.web.photos.UPLOAD_BYTES).
const PAGE = Number(document.body.dataset.pageSize);
const UPLOAD_BYTES = Number(document.body.dataset.uploadBytes);

const $ = (id) => document.getElementById(id);
const el = {
  form: $("search"), q: $("q"), file: $("file"), useMin: $("use-min"), min: $("min"), facts: $("facts"),
  message: $("message"), grid: $("grid"), more: $("more"),
  queryPhoto: $("query-photo"), queryPhotoOpen: $("query-photo-open"), queryPhotoImg: $("query-photo-img"),
  queryPhotoName: $("query-photo-name"), queryPhotoWords: $("query-photo-words"), queryPhotoClear: $("query-photo-clear"),
  inFolder: $("in"), since: $("since"), until: $("until"), type: $("type"), terms: $("terms"),
  viewer: $("viewer"), frame: $("frame"), photo: $("photo"), heat: $("heat"), peak: $("peak"),
  close: $("close"), viewerName: $("viewer-name"), viewerPath: $("viewer-path"), viewerScore: $("viewer-score"), phraseForm: $("phrase-form"),
  phrase: $("phrase"), chips: $("chips"), opacity: $("opacity"), viewerMessage: $("viewer-message"),
  like: $("like"), drop: $("drop"), here: $("here"), hereWords: $("here-words"), point: $("point"),
};

const state = {
  query: null, // {q: words}, {like: photo id}, or both (the photo a plus term beside the words' terms)
  hits: [],
  done: true, // no more pages
  loading: false,
  generation: 0, // bumped by each new search: answers to an older one are dropped
  open: -1, // index in hits of the photo shown large (-1: the query photo or none)
  viewer: null, // {id, name, score, terms} of the photo shown large
  loc: null, // its localization: the API's shape plus the phrase
  names: new Map(), // photo id -> what to call it (a path, or an uploaded file's name)
  empty: null, // what to say when the gallery holds no photos (or does not exist yet)
};

// ------------------------------------------------------------------ talking to the server

async function api(path, options) {
  const response = await fetch(path, options);
  const isJson = (response.headers.get("content-type") || "").includes("json");
  const body = isJson ? await response.json() : await response.text();
  if (!response.ok) {
    throw new Error(isJson && body && body.error ? body.error : `${response.status} ${response.statusText}`);
  }
  return body;
}

const photoUrl = (id, what) => `/api/photos/${encodeURIComponent(id)}/${what}`;
const baseName = (path) => path.split(/[\\/]/).filter(Boolean).pop() || path;
const minScore = () => (el.useMin.checked && el.min.value !== "" ? Number(el.min.value) : null);

// The filters, as the API and the address bar name them (assoc.web.app: in, since, until, type).
const FILTERS = [["in", "inFolder"], ["since", "since"], ["until", "until"], ["type", "type"]];

function setFilters(params) {
  for (const [name, field] of FILTERS) {
    el[field].value = params.get(name) || "";
  }
}

function addFilters(params) {
  for (const [name, field] of FILTERS) {
    const value = el[field].value.trim();
    if (value) params.set(name, value);
  }
}

// A term of a combined query as people read it: its sign and weight, then its words or its photo's name.
function termLabel(term) {
  const sign = term.weight < 0 ? "\u2212" : "+";
  const weight = Math.abs(term.weight) === 1 ? "" : `${Math.abs(term.weight)}:`;
  const what = term.kind === "words" ? term.term : baseName(term.term) || "photo";
  return `${sign}${weight}${what}`;
}

function setMessage(text, isError = false) {
  el.message.textContent = text;
  el.message.classList.toggle("error", isError);
}

function setViewerMessage(text, isError = false) {
  el.viewerMessage.textContent = text;
  el.viewerMessage.classList.toggle("error", isError);
}

// ------------------------------------------------------------------ the address bar holds the search

function readUrl() {
  const params = new URLSearchParams(location.search);
  const min = params.get("min");
  el.useMin.checked = min !== null && min !== "" && Number.isFinite(Number(min));
  if (el.useMin.checked) el.min.value = min;
  el.min.disabled = !el.useMin.checked;
  setFilters(params);
  const q = params.get("q");
  const like = params.get("like");
  el.q.value = q || "";
  const query = {};
  if (like) query.like = like;
  if (q && q.trim()) query.q = q;
  return query.like || query.q ? query : null;
}

function writeUrl(push) {
  const params = new URLSearchParams();
  if (state.query && state.query.q) params.set("q", state.query.q);
  if (state.query && state.query.like) params.set("like", state.query.like);
  addFilters(params);
  const min = minScore();
  if (min !== null) params.set("min", String(min));
  const url = params.toString() ? `?${params}` : location.pathname;
  if (push) history.pushState(null, "", url);
  else history.replaceState(null, "", url);
}

// ------------------------------------------------------------------ searching and the grid

function startSearch(query, push) {
  state.query = query;
  state.hits = [];
  state.done = !query;
  state.loading = false;
  state.generation += 1;
  el.grid.replaceChildren();
  closeViewer();
  setMessage("");
  writeUrl(push);
  showQueryPhoto();
  document.title = query && query.q ? `${query.q} · assoc` : "assoc";
  if (query) loadMore();
}

async function loadMore() {
  if (state.loading || state.done || !state.query) return;
  state.loading = true;
  const generation = state.generation;
  const params = new URLSearchParams({ k: String(PAGE), offset: String(state.hits.length) });
  if (state.query.q) params.set("q", state.query.q);
  if (state.query.like) params.set("like", state.query.like);
  addFilters(params);
  const min = minScore();
  if (min !== null) params.set("min_score", String(min));
  if (state.hits.length === 0) setMessage("Searching…");
  try {
    const hits = await api(`/api/search?${params}`);
    if (generation !== state.generation) return;
    state.done = hits.length < PAGE;
    const first = state.hits.length;
    for (const hit of hits) {
      state.names.set(hit.id, hit.path);
      state.hits.push(hit);
    }
    el.grid.append(...hits.map((hit, k) => tile(hit, first + k)));
    if (state.hits.length === 0) {
      setMessage(min === null ? "No photos matched." : `No photos scored ${min} or more.`);
    } else {
      setMessage("");
    }
    showQueryPhoto();
  } catch (error) {
    if (generation !== state.generation) return;
    state.done = true;
    if (state.empty) setMessage(state.empty);
    else setMessage(error.message, true);
  } finally {
    if (generation === state.generation) state.loading = false;
  }
  if (generation === state.generation && !state.done && nearBottom()) loadMore();
}

function tile(hit, index) {
  const item = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "tile";
  button.dataset.index = String(index);
  button.dataset.id = hit.id;
  button.title = hit.path;
  const img = document.createElement("img");
  img.loading = "lazy";
  img.alt = baseName(hit.path);
  img.src = photoUrl(hit.id, "thumbnail.jpg");
  const caption = document.createElement("span");
  caption.className = "caption";
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = hit.score.toFixed(3);
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = baseName(hit.path);
  caption.append(score, name);
  button.append(img, caption);
  button.addEventListener("click", () => openHit(index));
  item.append(button);
  return item;
}

function nearBottom() {
  return el.more.getBoundingClientRect().top < window.innerHeight + 600;
}

function showQueryPhoto() {
  const like = state.query && state.query.like;
  el.queryPhoto.hidden = !like;
  if (!like) return;
  const src = photoUrl(like, "thumbnail.jpg");
  if (el.queryPhotoImg.getAttribute("src") !== src) el.queryPhotoImg.src = src;
  const name = state.names.get(like) || "this photo";
  el.queryPhotoName.textContent = baseName(name);
  el.queryPhotoImg.alt = baseName(name);
  el.queryPhotoWords.textContent = state.query.q ? ` with ${state.query.q}` : "";
  el.queryPhotoClear.hidden = !state.query.q;
}

// ------------------------------------------------------------------ one photo, large, with its heatmaps

function openHit(index) {
  const hit = state.hits[index];
  if (!hit) return;
  state.open = index;
  showPhoto({ id: hit.id, name: hit.path, score: hit.score, terms: hit.terms || [] });
}

function showPhoto(photo) {
  state.viewer = photo;
  state.loc = null;
  el.viewer.hidden = false;
  el.photo.src = photoUrl(photo.id, "photo.jpg");
  el.photo.alt = baseName(photo.name);
  el.heat.hidden = true;
  el.heat.removeAttribute("src");
  delete el.frame.dataset.heat;
  el.peak.hidden = true;
  el.point.hidden = true;
  el.here.hidden = true;
  el.chips.replaceChildren();
  el.viewerName.textContent = baseName(photo.name);
  el.viewerPath.textContent = photo.name === baseName(photo.name) ? "" : photo.name;
  document.body.classList.add("viewing");
  el.viewerScore.textContent = photo.score == null ? "" : `score ${photo.score.toFixed(4)}`;
  setViewerMessage("");
  const terms = photo.terms || [];
  el.terms.replaceChildren(...terms.map(termChip));
  el.terms.hidden = terms.length === 0;
  // A combined query's first plus term of words (each term's heatmap is a click away); else the words asked.
  const wordTerms = terms.filter((t) => t.kind === "words");
  const first = wordTerms.find((t) => t.weight > 0) || wordTerms[0];
  const asked = state.query && state.query.q && !terms.length ? state.query.q : "";
  const words = first ? first.term : asked || el.phrase.value.trim();
  el.phrase.value = words;
  if (words) localize(words);
  else setViewerMessage("Type words to see where they land in this photo.");
  el.close.focus();
}

function closeViewer() {
  if (el.viewer.hidden) return;
  el.viewer.hidden = true;
  document.body.classList.remove("viewing");
  state.viewer = null;
  el.photo.removeAttribute("src");
  el.heat.removeAttribute("src");
  const back = el.grid.querySelector(`.tile[data-index="${state.open}"]`);
  if (back) back.focus();
  state.open = -1;
}

async function localize(phrase) {
  const photo = state.viewer;
  setViewerMessage("Finding the words…");
  try {
    const params = new URLSearchParams({ id: photo.id, q: phrase });
    const loc = await api(`/api/localize?${params}`);
    if (state.viewer !== photo) return;
    state.loc = { ...loc, phrase };
    setViewerMessage("");
    renderChips();
    showMap(null);
  } catch (error) {
    if (state.viewer === photo) setViewerMessage(error.message, true);
  }
}

// One term of a combined query with the photo's score for it alone; a term of words shows its heatmap.
function termChip(term) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "chip term";
  button.dataset.kind = term.kind;
  button.append(document.createTextNode(`${termLabel(term)} `));
  const value = document.createElement("span");
  value.className = "chip-score";
  value.textContent = term.score.toFixed(3);
  button.append(value);
  if (term.kind === "words") {
    button.title = "Show where these words land";
    button.addEventListener("click", () => {
      el.phrase.value = term.term;
      localize(term.term);
    });
  } else {
    button.disabled = true;
  }
  return button;
}

function renderChips() {
  const loc = state.loc;
  const mean = loc.words.reduce((sum, w) => sum + w.score, 0) / Math.max(1, loc.words.length);
  const chips = [chip("all words", mean, "")];
  loc.words.forEach((w, k) => chips.push(chip(w.word, w.score, String(k))));
  el.chips.replaceChildren(...chips);
}

function chip(label, score, word) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "chip";
  button.dataset.word = word;
  button.setAttribute("aria-pressed", "false");
  button.append(document.createTextNode(`${label} `));
  const value = document.createElement("span");
  value.className = "chip-score";
  value.textContent = score.toFixed(3);
  button.append(value);
  button.addEventListener("click", () => showMap(word === "" ? null : Number(word)));
  return button;
}

function showMap(word) {
  const loc = state.loc;
  const photo = state.viewer;
  if (!loc || !photo) return;
  for (const button of el.chips.children) {
    button.setAttribute("aria-pressed", String(button.dataset.word === (word === null ? "" : String(word))));
  }
  const params = new URLSearchParams({ q: loc.phrase });
  if (word !== null) params.set("word", String(word));
  el.heat.src = `${photoUrl(photo.id, "heatmap.png")}?${params}`;
  const [x, y] = word === null ? loc.peak : loc.words[word].peak;
  el.peak.style.left = `${(100 * (x + 0.5)) / loc.width}%`;
  el.peak.style.top = `${(100 * (y + 0.5)) / loc.height}%`;
  el.peak.hidden = false;
}

// A click on the photo asks which words match that point: the phrase's, or the model's vocabulary.
async function wordsAt(event) {
  const photo = state.viewer;
  if (!photo) return;
  const box = el.photo.getBoundingClientRect();
  const fx = Math.min(1, Math.max(0, (event.clientX - box.left) / box.width));
  const fy = Math.min(1, Math.max(0, (event.clientY - box.top) / box.height));
  el.point.style.left = `${100 * fx}%`;
  el.point.style.top = `${100 * fy}%`;
  el.point.hidden = false;
  const params = new URLSearchParams({ fx: fx.toFixed(4), fy: fy.toFixed(4) });
  const phrase = el.phrase.value.trim();
  if (phrase) params.set("q", phrase);
  try {
    const found = await api(`${photoUrl(photo.id, "words")}?${params}`);
    if (state.viewer !== photo) return;
    el.hereWords.replaceChildren(
      ...found.words.map((w) => {
        const item = document.createElement("li");
        item.textContent = `${w.word} `;
        const value = document.createElement("span");
        value.className = "chip-score";
        value.textContent = w.score.toFixed(3);
        item.append(value);
        return item;
      }),
    );
    el.here.hidden = false;
    setViewerMessage("");
  } catch (error) {
    if (state.viewer === photo) setViewerMessage(error.message, true);
  }
}

// The photo fills the stage, small photos enlarged up to MAX_ZOOM; the heatmap and peak follow its box.
const MAX_ZOOM = 2;
function fitPhoto() {
  const { naturalWidth: width, naturalHeight: height } = el.photo;
  if (el.viewer.hidden || !width || !height) return;
  const stage = el.frame.parentElement.getBoundingClientRect();
  const room = 32; // the stage's padding, both sides
  const scale = Math.min(MAX_ZOOM, (stage.width - room) / width, (stage.height - room) / height);
  el.photo.style.width = `${Math.max(1, Math.floor(width * scale))}px`;
  el.photo.style.height = `${Math.max(1, Math.floor(height * scale))}px`;
}

function step(delta) {
  if (state.open < 0) return;
  const next = state.open + delta;
  if (next >= 0 && next < state.hits.length) openHit(next);
  if (next >= state.hits.length - 1) loadMore();
}

// ------------------------------------------------------------------ a photo as the query

async function searchWithFile(file) {
  if (!file) return;
  if (file.size > UPLOAD_BYTES) {
    setMessage(`${file.name} is over the ${UPLOAD_BYTES >> 20} MB upload limit.`, true);
    return;
  }
  setMessage("Reading the photo…");
  try {
    const kind = file.type || "application/octet-stream";
    const upload = await api("/api/uploads", { method: "POST", body: file, headers: { "content-type": kind } });
    state.names.set(upload.id, file.name);
    el.q.value = "";
    startSearch({ like: upload.id }, true);
  } catch (error) {
    setMessage(error.message, true);
  }
}

const carriesFiles = (event) => event.dataTransfer && Array.from(event.dataTransfer.types).includes("Files");
let dragDepth = 0;

window.addEventListener("dragenter", (event) => {
  if (!carriesFiles(event)) return;
  event.preventDefault();
  dragDepth += 1;
  el.drop.hidden = false;
});
window.addEventListener("dragleave", (event) => {
  if (!carriesFiles(event)) return;
  dragDepth = Math.max(0, dragDepth - 1);
  if (dragDepth === 0) el.drop.hidden = true;
});
window.addEventListener("dragover", (event) => {
  if (carriesFiles(event)) event.preventDefault();
});
window.addEventListener("drop", (event) => {
  if (!carriesFiles(event)) return;
  event.preventDefault();
  dragDepth = 0;
  el.drop.hidden = true;
  searchWithFile(event.dataTransfer.files[0]);
});

// ------------------------------------------------------------------ gallery facts

async function loadFacts() {
  try {
    const info = await api("/api/info");
    const store = info.store;
    const parts = [`${store.photos.toLocaleString()} photo${store.photos === 1 ? "" : "s"}`];
    parts.push(`model ${info.bundle.model_name}`);
    if (store.last_indexed) parts.push(`last indexed ${new Date(store.last_indexed).toLocaleString()}`);
    parts.push(store.location);
    el.facts.textContent = parts.join(" · ");
    if (!store.matches_bundle) {
      setMessage(`This gallery was indexed with model ${store.bundle_id}, not ${info.bundle.bundle_id}.`, true);
    } else if (!store.exists || store.photos === 0) {
      state.empty = `The gallery at ${store.location} is empty. Index some photos into it first (assoc index).`;
      setMessage(state.empty);
    } else if (!state.query) {
      setMessage("Type some words to search your photos, or drop a photo on the page.");
    }
  } catch (error) {
    el.facts.textContent = "";
    setMessage(error.message, true);
  }
}

// ------------------------------------------------------------------ wiring

el.form.addEventListener("submit", (event) => {
  event.preventDefault();
  const q = el.q.value.trim();
  const like = state.query && state.query.like; // the photo shown above the results stays a term
  if (q && like) startSearch({ like, q }, true);
  else if (q) startSearch({ q }, true);
  else if (like) startSearch({ like }, true);
});
el.queryPhotoClear.addEventListener("click", () => {
  if (state.query && state.query.q) startSearch({ q: state.query.q }, true);
});
for (const [, field] of FILTERS) {
  el[field].addEventListener("change", () => {
    if (state.query) startSearch(state.query, false);
    else writeUrl(false);
  });
}
el.file.addEventListener("change", () => {
  searchWithFile(el.file.files[0]);
  el.file.value = "";
});
el.useMin.addEventListener("change", () => {
  el.min.disabled = !el.useMin.checked;
  if (state.query) startSearch(state.query, false);
});
el.min.addEventListener("change", () => {
  if (state.query && el.useMin.checked) startSearch(state.query, false);
});
el.queryPhotoOpen.addEventListener("click", () => {
  const like = state.query && state.query.like;
  if (!like) return;
  state.open = -1;
  showPhoto({ id: like, name: state.names.get(like) || "this photo", score: null, terms: [] });
});
el.close.addEventListener("click", closeViewer);
el.like.addEventListener("click", () => {
  if (!state.viewer) return;
  const id = state.viewer.id;
  state.names.set(id, state.viewer.name);
  el.q.value = "";
  startSearch({ like: id }, true);
});
el.phraseForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const words = el.phrase.value.trim();
  if (words && state.viewer) localize(words);
});
el.opacity.addEventListener("input", () => {
  el.heat.style.opacity = String(Number(el.opacity.value) / 100);
});
el.heat.addEventListener("load", () => {
  el.heat.hidden = false;
  el.frame.dataset.heat = el.heat.src;
});
el.heat.addEventListener("error", () => {
  if (el.heat.getAttribute("src")) setViewerMessage("The heatmap could not be drawn.", true);
});
el.photo.addEventListener("load", fitPhoto);
el.photo.addEventListener("click", wordsAt);
window.addEventListener("resize", fitPhoto);
el.photo.addEventListener("error", () => {
  if (el.photo.getAttribute("src")) setViewerMessage("This photo can no longer be read from its folder.", true);
});
window.addEventListener("popstate", () => startSearch(readUrl(), false));
window.addEventListener("scroll", () => {
  if (nearBottom()) loadMore();
}, { passive: true });
if ("IntersectionObserver" in window) {
  new IntersectionObserver((entries) => {
    if (entries.some((entry) => entry.isIntersecting)) loadMore();
  }, { rootMargin: "600px" }).observe(el.more);
}

document.addEventListener("keydown", (event) => {
  const typing = event.target instanceof HTMLInputElement && event.target.type !== "checkbox"
    && event.target.type !== "range";
  if (!el.viewer.hidden) {
    if (event.key === "Escape") {
      event.preventDefault();
      closeViewer();
    } else if (!typing && (event.key === "ArrowRight" || event.key === "ArrowLeft")) {
      event.preventDefault();
      step(event.key === "ArrowRight" ? 1 : -1);
    } else if (!typing && event.key === "/") {
      event.preventDefault();
      el.phrase.focus();
    }
    return;
  }
  if (typing) return;
  if (event.key === "/") {
    event.preventDefault();
    el.q.focus();
    el.q.select();
    return;
  }
  const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns(), ArrowUp: -columns() };
  if (!(event.key in moves) || state.hits.length === 0) return;
  event.preventDefault();
  const current = document.activeElement && document.activeElement.closest(".tile");
  const from = current ? Number(current.dataset.index) : -1;
  const to = current ? Math.min(state.hits.length - 1, Math.max(0, from + moves[event.key])) : 0;
  const target = el.grid.querySelector(`.tile[data-index="${to}"]`);
  if (target) {
    target.focus();
    target.scrollIntoView({ block: "nearest" });
  }
  if (to >= state.hits.length - columns()) loadMore();
});

function columns() {
  const tiles = el.grid.querySelectorAll(".tile");
  if (tiles.length === 0) return 1;
  const top = tiles[0].getBoundingClientRect().top;
  let count = 0;
  for (const t of tiles) {
    if (t.getBoundingClientRect().top !== top) break;
    count += 1;
  }
  return Math.max(1, count);
}

el.heat.style.opacity = String(Number(el.opacity.value) / 100);
startSearch(readUrl(), false);
loadFacts();
