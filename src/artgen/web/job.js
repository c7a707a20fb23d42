// artgen web page: the result panel (progress, status, the final image or video, downloads).
"use strict";

function formatSeconds(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "";
  const total = Math.max(0, Math.round(seconds));
  const minutes = Math.floor(total / 60);
  return minutes ? `${minutes}m ${String(total % 60).padStart(2, "0")}s` : `${total}s`;
}

// `frames`: "Frame k of N · iteration i / n" for an animation, else "".
function setProgress(iteration, iterations, etaSeconds, frames = "") {
  const fraction = iterations ? Math.min(1, iteration / iterations) : 0;
  const percent = Math.round(fraction * 100);
  $("#progress").setAttribute("aria-valuenow", String(percent));
  $("#progress").dataset.iteration = String(iteration);
  $("#progress-fill").style.width = `${percent}%`;
  const eta = formatSeconds(etaSeconds);
  const done = frames || `Iteration ${iteration} / ${iterations}`;
  $("#progress-text").textContent = `${done}${eta && fraction < 1 ? ` · about ${eta} left` : ""}`;
}

// A cancel the server has taken but the worker has not acted on yet (`cancel_requested`).
function isCanceling(job) {
  return Boolean(job && job.cancel_requested) && ACTIVE.has(job.status);
}

function statusLabel(job) {
  return isCanceling(job) ? "canceling…" : job.status;
}

function setStatus(status, canceling = false) {
  const badge = $("#job-status");
  badge.textContent = canceling ? "canceling…" : status;
  badge.dataset.status = status;
  badge.dataset.canceling = canceling ? "true" : "false";
  badge.className = `badge ${canceling ? "canceling" : status}`;
  $("#cancel").hidden = !ACTIVE.has(status);
  if (canceling) {
    $("#cancel").disabled = true;
    $("#cancel").textContent = "Canceling…";
  }
  if (status !== "queued") {
    $("#queue-position").hidden = true;
    stopQueuePoll();
  }
}

function renderParams(job) {
  const list = $("#job-params");
  list.replaceChildren();
  const params = { ...job.params, seed: job.seed ?? job.params.seed };
  for (const [name, label] of Object.entries(PARAM_LABELS)) {
    const value = params[name];
    if (value === undefined || value === null || value === "") continue;
    const term = document.createElement("dt");
    term.textContent = label;
    const data = document.createElement("dd");
    data.dataset.param = name;
    data.textContent = Animations.formatParam(name, value)
      ?? (Array.isArray(value) ? value.join(", ") : String(value));
    list.append(term, data);
  }
}

function resetView() {
  stopStream();
  stopQueuePoll();
  for (const id of ["#preview-image", "#final-image", "#final-video", "#download-png",
    "#download-video", "#reuse", "#seed-used", "#job-error", "#job-note", "#queue-position"]) {
    $(id).hidden = true;
  }
  $("#preview-image").removeAttribute("src");
  $("#final-image").removeAttribute("src");
  $("#final-video").pause();
  $("#final-video").removeAttribute("src");
  $("#final-video").removeAttribute("poster");
  $("#image-caption").textContent = "";
  $("#cancel").disabled = false;
  $("#cancel").textContent = "Cancel";
}

// Shows a job from scratch and follows it while it is active.
function showJob(job) {
  resetView();
  state.job = job;
  $("#job-empty").hidden = true;
  $("#job-view").hidden = false;
  $("#job-view").dataset.jobId = job.id;
  $("#job-prompt").textContent = promptOf(job.params) || "(image prompts only)";
  renderParams(job);
  updateJob(job);
  if (ACTIVE.has(job.status)) followJob(job);
}

// Applies a fresh job record to the view.
function updateJob(job) {
  state.job = job;
  setStatus(job.status, isCanceling(job));
  setProgress(job.iteration || 0, job.iterations || job.params.iterations, job.eta_seconds,
    Animations.isAnimated(job) ? Animations.frameProgress(job) : "");
  if (job.status === "queued") {
    const position = job.queue_position;
    $("#queue-position").textContent = position === null || position === undefined
      ? "Waiting in the queue…"
      : position === 0
        ? "Waiting in the queue: next to start."
        : `Waiting in the queue: ${position} job${position === 1 ? "" : "s"} ahead.`;
    $("#queue-position").hidden = false;
  }
  if (!ACTIVE.has(job.status)) showFinished(job);
}

function showFinished(job) {
  stopStream();
  $("#cancel").hidden = true;
  // The caption described the preview: both go (a succeeded job's final image gets its own).
  $("#preview-image").hidden = true;
  $("#image-caption").textContent = "";
  $("#reuse").hidden = false;
  renderParams(job);
  if (job.seed !== null && job.seed !== undefined) {
    $("#seed-used").textContent = `Seed used: ${job.seed} (press "Reuse these settings" to keep it).`;
    $("#seed-used").hidden = false;
  }
  const animated = Animations.isAnimated(job);
  if (animated && job.urls.video) {
    showVideo(job);
  } else if (job.status === "succeeded" && job.urls.image) {
    $("#final-image").hidden = false;
    showImage($("#final-image"), job.urls.image).catch((error) => showMessage(describeError(error)));
    $("#image-caption").textContent = `${job.params.width} × ${job.params.height}`;
  }
  if (job.status === "succeeded" && job.urls.image) {
    setDownload($("#download-png"), job.urls.image, `artgen-${job.id}.png`);
    $("#download-png").textContent = animated ? "Download last frame" : "Download PNG";
  }
  if (job.urls.video) setDownload($("#download-video"), job.urls.video, `artgen-${job.id}.mp4`);
  if (job.status === "failed") {
    const error = job.error || {};
    $("#job-error").textContent =
      `Failed${error.code ? ` (${error.code})` : ""}: ${error.message || "no reason given"}`;
    $("#job-error").hidden = false;
  }
  if (job.status === "canceled") {
    // Asked for, not an error: a neutral note.
    $("#job-note").textContent = animated ? Animations.canceledNote(job)
      : `Canceled at iteration ${job.iteration || 0}.`;
    $("#job-note").hidden = false;
  }
}

// An animation's MP4 (a canceled one's: the frames made so far) playing, its last frame as poster.
function showVideo(job) {
  const video = $("#final-video");
  video.hidden = false;
  if (job.urls.image) showImage(video, job.urls.image, "poster").catch(() => {});
  else if (job.urls.preview) showImage(video, job.urls.preview, "poster").catch(() => {});
  showImage(video, job.urls.video).catch((error) => showMessage(describeError(error)));
  const frames = job.frames_done || job.frames;
  const fps = job.params.fps ? ` at ${job.params.fps} fps` : "";
  $("#image-caption").textContent =
    `${job.params.width} × ${job.params.height} · ${frames} frames${fps}`;
}

function setDownload(link, url, filename) {
  link.href = url;
  link.download = filename;
  link.hidden = false;
}

// Downloads behind an API key need the header, so they go through fetch and a blob link.
async function downloadWithKey(event) {
  if (!apiKey()) return;
  event.preventDefault();
  const link = event.currentTarget;
  try {
    const response = await fetch(link.getAttribute("href"), { headers: authHeaders() });
    if (!response.ok) throw await errorFrom(response);
    const blobUrl = URL.createObjectURL(await response.blob());
    const temporary = document.createElement("a");
    temporary.href = blobUrl;
    temporary.download = link.download;
    temporary.click();
    setTimeout(() => URL.revokeObjectURL(blobUrl), 10000);
  } catch (error) {
    showMessage(describeError(error));
  }
}

async function refreshJob() {
  if (!state.job) return;
  try {
    updateJob(await api("GET", `/v1/jobs/${state.job.id}`));
  } catch (error) {
    showMessage(describeError(error));
  }
}

function onJobEvent(type, data) {
  if (!state.job) return;
  if (type === "progress") {
    if (state.job.status === "queued") setStatus("running");
    if (data.frame !== undefined) state.job.frame = data.frame;
    const frames = Animations.isAnimated(state.job)
      ? Animations.frameProgress(state.job, data) : "";
    setProgress(data.iteration, data.iterations, data.eta_seconds, frames);
  } else if (type === "frame") {
    state.job.frames_done = Math.max(state.job.frames_done || 0, (data.frame ?? -1) + 1);
  } else if (type === "preview") {
    const img = $("#preview-image");
    img.dataset.iteration = String(data.iteration);
    img.hidden = false;
    showImage(img, withQuery(data.url, "iteration", data.iteration)).catch(() => {});
    $("#image-caption").textContent = Animations.isAnimated(state.job)
      ? Animations.previewCaption(state.job, data) : `Iteration ${data.iteration}`;
    const card = document.querySelector(`#gallery-list li[data-job-id="${state.job.id}"]`);
    if (card) setCardThumb(card, data.url, data.iteration);
  } else if (type === "status") {
    state.job.status = data.status;
    setStatus(data.status, isCanceling(state.job));
    loadGallery(state.galleryOffset);
  } else if (type === "done") {
    stopStream();
    refreshJob();
    loadGallery(state.galleryOffset);
  }
}
