// artgen web page: the gallery (pages of jobs, live cards of active jobs, open, delete).
"use strict";

async function loadGallery(offset = state.galleryOffset) {
  let page;
  try {
    page = await api("GET", `/v1/jobs?limit=${PAGE_SIZE}&offset=${Math.max(0, offset)}`);
  } catch (error) {
    showMessage(`Could not load the gallery: ${describeError(error)}`);
    return null;
  }
  // The last page may have emptied (deletes): step back one page.
  if (!page.items.length && page.total > 0 && offset > 0) {
    return loadGallery(Math.max(0, offset - PAGE_SIZE));
  }
  state.galleryOffset = page.offset;
  const list = $("#gallery-list");
  list.replaceChildren(...page.items.map(galleryItem));
  watchActiveCards();
  $("#gallery-empty").hidden = page.total > 0;
  const pages = Math.max(1, Math.ceil(page.total / PAGE_SIZE));
  const current = Math.floor(page.offset / PAGE_SIZE) + 1;
  $("#gallery-page").textContent = `Page ${current} of ${pages} (${page.total} jobs)`;
  $("#gallery-newer").disabled = page.offset <= 0;
  $("#gallery-older").disabled = page.offset + page.items.length >= page.total;
  return page;
}

function galleryItem(job) {
  const item = document.createElement("li");
  item.className = "card";
  item.dataset.jobId = job.id;
  item.dataset.testid = "gallery-item";
  item.dataset.status = job.status;

  const open = document.createElement("button");
  open.type = "button";
  open.className = "card-open";
  open.title = "Open this job";
  const picture = document.createElement("div");
  picture.className = "card-thumb";
  picture.dataset.testid = "gallery-thumb";
  picture.textContent = ACTIVE.has(job.status) ? "no preview yet" : "no picture";
  const prompt = document.createElement("span");
  prompt.className = "card-prompt";
  prompt.dataset.testid = "gallery-prompt";
  prompt.textContent = promptOf(job.params) || "(image prompts only)";
  open.append(picture, prompt);
  open.addEventListener("click", () => openJob(job.id));

  const footer = document.createElement("div");
  footer.className = "card-foot";
  const badge = document.createElement("span");
  badge.className = "badge";
  badge.dataset.testid = "gallery-badge";
  const remove = document.createElement("button");
  remove.type = "button";
  remove.className = "danger small";
  remove.dataset.testid = "gallery-delete";
  remove.textContent = "Delete";
  // Two clicks: the first asks, the second deletes (no blocking confirm() dialog).
  remove.addEventListener("click", () => {
    if (remove.dataset.armed) deleteJob(job.id);
    else {
      remove.dataset.armed = "1";
      remove.textContent = "Really delete?";
    }
  });
  footer.append(remove);
  if (Animations.isAnimated(job)) {
    // Videos are told apart from pictures by a label on the picture's other corner.
    const videoBadge = document.createElement("span");
    videoBadge.className = "video-badge";
    videoBadge.dataset.testid = "gallery-video-badge";
    videoBadge.textContent = job.kind === "restyle" ? "▶ restyle" : "▶ video";
    videoBadge.title = `${job.frames || "?"} frames`;
    item.dataset.kind = job.kind;
    open.append(videoBadge);
  }
  // The badge sits on the picture's corner: every footer then holds the same one button.
  item.append(open, badge, footer);
  updateCard(item, job);
  return item;
}

// Brings a card up to date: badge, and the final image or (while active) the latest preview.
function updateCard(item, job) {
  item.dataset.status = job.status;
  const badge = item.querySelector(".badge");
  badge.className = `badge ${isCanceling(job) ? "canceling" : job.status}`;
  badge.textContent = statusLabel(job);
  const url = job.status === "succeeded" ? job.urls.image : job.urls.preview;
  if (url) {
    // The iteration keeps a newer preview from being answered by the browser's cache.
    setCardThumb(item, url, job.status === "succeeded" ? "final" : job.iteration);
  }
}

function setCardThumb(item, url, version) {
  let picture = item.querySelector(".card-thumb");
  if (picture.dataset.version === String(version)) return;
  if (picture.tagName !== "IMG") {
    const img = document.createElement("img");
    img.className = "card-thumb";
    img.dataset.testid = "gallery-thumb";
    img.alt = item.querySelector(".card-prompt").textContent || "artgen image";
    picture.replaceWith(img);
    picture = img;
  }
  picture.dataset.version = String(version);
  const src = version === "final" ? url : withQuery(url, "iteration", version);
  showImage(picture, src).catch(() => {
    picture.alt = "image unavailable";
  });
}

function refreshCard(job) {
  const item = document.querySelector(`#gallery-list li[data-job-id="${job.id}"]`);
  if (item) updateCard(item, job);
}

// Active jobs in the gallery that this page does not follow (another tab's, say) are re-read
// every few seconds, so their cards show the latest preview and status; one that ended reloads
// the page of the gallery.
function watchActiveCards() {
  clearInterval(state.galleryPoll);
  state.galleryPoll = null;
  const active = () => [...document.querySelectorAll("#gallery-list li")]
    .filter((item) => ACTIVE.has(item.dataset.status));
  if (!active().length) return;
  state.galleryPoll = setInterval(async () => {
    const items = active();
    if (!items.length) {
      watchActiveCards();
      return;
    }
    for (const item of items) {
      if (state.job && state.job.id === item.dataset.jobId && state.stopStream) continue;
      let job;
      try {
        job = await api("GET", `/v1/jobs/${item.dataset.jobId}`);
      } catch (_) {
        continue; // deleted meanwhile, or offline: the next gallery load sorts it out
      }
      if (!ACTIVE.has(job.status)) {
        loadGallery(state.galleryOffset);
        return;
      }
      updateCard(item, job);
    }
  }, GALLERY_POLL_MS);
}

async function openJob(id) {
  clearMessage();
  try {
    showJob(await api("GET", `/v1/jobs/${id}`));
    $("#job").scrollIntoView({ behavior: "smooth" });
  } catch (error) {
    showMessage(describeError(error));
  }
}

async function deleteJob(id) {
  try {
    await api("DELETE", `/v1/jobs/${id}`);
  } catch (error) {
    showMessage(describeError(error));
    return;
  }
  if (state.job && state.job.id === id) {
    resetView();
    state.job = null;
    $("#job-view").hidden = true;
    $("#job-empty").hidden = false;
  }
  showMessage("Deleted.", "info");
  loadGallery(state.galleryOffset);
}
