// assoc serve: the duplicates page, over GET /api/duplicates. The threshold lives in the address bar
// (?threshold=T); the default is the server's (assoc.runtime.search.duplicates), handed over in <body>.
// File names are only ever set as text (textContent, alt, title), never parsed as HTML.
"use strict";

const DEFAULT_THRESHOLD = document.body.dataset.threshold;
const $ = (id) => document.getElementById(id);
const el = { form: $("find"), threshold: $("threshold"), message: $("message"), groups: $("groups") };
const baseName = (path) => path.split(/[\\/]/).filter(Boolean).pop() || path;
let generation = 0; // bumped by each request: an older answer is dropped

function setMessage(text, isError = false) {
  el.message.textContent = text;
  el.message.classList.toggle("error", isError);
}

function sizeText(bytes) {
  return bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${Math.round(bytes / 1e3)} kB`;
}

function photoTile(photo, first) {
  const link = document.createElement("a");
  link.className = "tile dup-tile";
  link.href = `/?like=${encodeURIComponent(photo.content_hash)}`;
  link.title = `${photo.path}\nPhotos like this one`;
  const img = document.createElement("img");
  img.loading = "lazy";
  img.alt = baseName(photo.path);
  img.src = `/api/photos/${encodeURIComponent(photo.content_hash)}/thumbnail.jpg`;
  const caption = document.createElement("span");
  caption.className = "caption";
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = baseName(photo.path);
  const facts = document.createElement("span");
  facts.className = "score";
  facts.textContent = first ? "largest" : photo.similarity.toFixed(3);
  caption.append(facts, name);
  const detail = document.createElement("span");
  detail.className = "caption dup-detail";
  detail.textContent = `${photo.width}×${photo.height} · ${sizeText(photo.size)}`;
  link.append(img, caption, detail);
  return link;
}

function render(found) {
  el.groups.replaceChildren(
    ...found.groups.map((group, number) => {
      const section = document.createElement("section");
      section.className = "dup-group";
      const title = document.createElement("h2");
      title.textContent = `Group ${number + 1}: ${group.photos.length} photos, similarity ${group.similarity.toFixed(3)}`;
      const row = document.createElement("div");
      row.className = "grid";
      row.append(...group.photos.map((photo, k) => photoTile(photo, k === 0)));
      section.append(title, row);
      return section;
    }),
  );
  const copies = found.groups.reduce((sum, group) => sum + group.photos.length - 1, 0);
  setMessage(
    found.groups.length === 0
      ? `No duplicates among ${found.photos} photos at similarity ${found.threshold}.`
      : `${found.groups.length} groups, ${copies} copies besides the largest of each, among ${found.photos} photos`
        + ` (similarity at least ${found.threshold}).`,
  );
}

async function find(threshold) {
  const mine = ++generation;
  setMessage("Comparing every photo…");
  el.groups.replaceChildren();
  try {
    const response = await fetch(`/api/duplicates?threshold=${encodeURIComponent(threshold)}`);
    const body = await response.json();
    if (mine !== generation) return;
    if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
    render(body);
  } catch (error) {
    if (mine === generation) setMessage(error.message, true);
  }
}

function fromUrl() {
  const threshold = new URLSearchParams(location.search).get("threshold") || DEFAULT_THRESHOLD;
  el.threshold.value = threshold;
  find(threshold);
}

el.form.addEventListener("submit", (event) => {
  event.preventDefault();
  const params = new URLSearchParams({ threshold: el.threshold.value });
  history.pushState(null, "", `/duplicates?${params}`);
  find(el.threshold.value);
});
window.addEventListener("popstate", fromUrl);
fromUrl();
