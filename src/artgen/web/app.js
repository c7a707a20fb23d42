// artgen web page: plain JS over the documented /v1 API (docs/architecture.md), no build step.
"use strict";

const KEY_STORAGE = "artgen.apiKey";
const PAGE_SIZE = 12;
const ACTIVE = new Set(["queued", "running"]);
// `frame`: an animation finished a frame (animation.js).
const EVENT_TYPES = ["progress", "preview", "frame", "status", "done"];
// Form fields sent as numbers; anything else the API names goes to the message banner.
const NUMBER_FIELDS = ["width", "height", "iterations", "step_size", "cutn", "cut_pow",
  "init_weight", "preview_every"];
const FIELD_NAMES = ["prompts", "seed", "model", "clip_models", "video", "init_image",
  "image_prompts", ...NUMBER_FIELDS, ...Animations.FIELD_NAMES];
// API field names shown by another form field: the page sends `prompt` (its alias `prompts`).
const FIELD_ALIASES = { prompt: "prompts" };
// The demo model (`--model demo`) knows coloured shapes on coloured backgrounds: prompts it paints.
const DEMO_MODEL = "demo";
const DEMO_PROMPTS = ["a red circle on a blue background", "a yellow star on a black background",
  "a white square on a green background", "an orange triangle on a purple background"];
// How long typing pauses before the server is asked how it reads the prompt.
const PARSE_DELAY_MS = 150;
// Gallery cards of active jobs this page is not following are refreshed this often.
const GALLERY_POLL_MS = 3000;
// Shown in the parameters list, in this order, when the job has them.
const PARAM_LABELS = {
  prompts: "Prompt", width: "Width", height: "Height", iterations: "Iterations", seed: "Seed",
  model: "Model", clip_models: "CLIP", step_size: "Step size", cutn: "Cutouts",
  cut_pow: "Cut power", init_weight: "Init weight", preview_every: "Preview every",
  video: "Video", optimizer: "Optimizer", augment: "Augment", noise_prompts: "Noise prompts",
  ...Animations.PARAM_LABELS,
};

const $ = (selector) => document.querySelector(selector);

const state = {
  job: null,            // the job shown in the result panel
  stopStream: null,     // closes the current job's event stream
  queuePoll: null,      // timer refreshing the queue position while queued
  galleryOffset: 0,
  galleryPoll: null,    // timer refreshing the gallery's active cards
  parseTimer: null,     // pending "how does the server read this prompt" request
  parseSeq: 0,          // answers to older parse requests are dropped
  initFile: null,
  promptFiles: [],
  objectUrls: new Map(), // element -> blob URL it shows, revoked when replaced
};

class ApiError extends Error {
  constructor(status, code, message, details = [], retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
    this.retryAfter = retryAfter;
  }
}

// ---------- API ----------

function apiKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

function authHeaders() {
  const key = apiKey();
  return key ? { "X-API-Key": key } : {};
}

async function errorFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  const error = (body && body.error) || {};
  const message = error.message || `${response.status} ${response.statusText || "error"}`;
  const details = error.details || (error.field ? [{ field: error.field, message }] : []);
  return new ApiError(response.status, error.code || "http_error", message, details,
    response.headers.get("Retry-After"));
}

async function api(method, path, body) {
  const options = { method, headers: authHeaders() };
  if (body instanceof FormData) {
    options.body = body;
  } else if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, options);
  } catch (_) {
    throw new ApiError(0, "network_error", "Cannot reach the artgen server. Is it running?");
  }
  if (!response.ok) throw await errorFrom(response);
  if (response.status === 204) return null;
  return response.json();
}

// Images (and videos) behind an API key cannot be plain <img src> (no header), so they go
// through fetch. `attribute`: "src", or a video's "poster".
async function showImage(img, url, attribute = "src") {
  let src = url;
  if (apiKey()) {
    const response = await fetch(url, { headers: authHeaders() });
    if (!response.ok) throw await errorFrom(response);
    src = URL.createObjectURL(await response.blob());
  }
  const key = attribute === "src" ? img : `${attribute}:${img.id}`;
  const old = state.objectUrls.get(key);
  if (old) URL.revokeObjectURL(old);
  if (src !== url) state.objectUrls.set(key, src);
  else state.objectUrls.delete(key);
  img.setAttribute(attribute, src);
}

function withQuery(url, key, value) {
  return `${url}${url.includes("?") ? "&" : "?"}${key}=${encodeURIComponent(value)}`;
}

// ---------- messages and field errors ----------

function describeError(error) {
  switch (error.code) {
    case "queue_full": {
      const wait = error.retryAfter ? ` Try again in ${error.retryAfter} s.` : " Try again shortly.";
      return `The queue is full.${wait}`;
    }
    case "unauthorized":
      return `${error.message} Set a valid key under "API key" at the top.`;
    case "rate_limited":
      return `Too many requests: ${error.message}`;
    case "shutting_down":
      return `The server is shutting down: ${error.message}`;
    default:
      return error.message;
  }
}

function showMessage(text, kind = "error") {
  const box = $("#message");
  box.textContent = text;
  box.className = `message ${kind}`;
  box.dataset.kind = kind;
  box.hidden = false;
}

function clearMessage() {
  $("#message").hidden = true;
}

// The API may name a field "width", "params.width" or "body.width": take the known name.
function fieldName(field) {
  const parts = String(field || "").split(/[.\[\]]/).filter(Boolean)
    .map((part) => FIELD_ALIASES[part] || part);
  return parts.reverse().find((part) => FIELD_NAMES.includes(part)) || null;
}

function clearFieldErrors() {
  for (const name of FIELD_NAMES) {
    const box = document.getElementById(`error-${name}`);
    if (box) {
      box.hidden = true;
      box.textContent = "";
    }
    const input = document.getElementById(name);
    if (input) input.removeAttribute("aria-invalid");
  }
}

// Puts each error next to its field; returns the errors that have no field on the page.
function showFieldErrors(details) {
  const unplaced = [];
  for (const detail of details) {
    const name = fieldName(detail.field);
    const box = name && document.getElementById(`error-${name}`);
    if (!box) {
      unplaced.push(detail);
      continue;
    }
    box.textContent = box.textContent ? `${box.textContent} ${detail.message}` : detail.message;
    box.hidden = false;
    const input = document.getElementById(name);
    if (input) input.setAttribute("aria-invalid", "true");
    if (name === "step_size" || name === "cutn" || name === "cut_pow" ||
        name === "init_weight" || name === "preview_every" || name === "video") {
      $("#advanced").open = true;
    }
  }
  return unplaced;
}

// ---------- prompt syntax ----------

// The server reads the prompt (POST /v1/prompts/parse, the grammar every job uses): the chips
// show its answer, so the page has no grammar of its own.
function schedulePromptChips() {
  clearTimeout(state.parseTimer);
  state.parseTimer = setTimeout(renderPromptChips, PARSE_DELAY_MS);
}

async function renderPromptChips() {
  const text = $("#prompts").value;
  const seq = ++state.parseSeq;
  const list = $("#prompt-chips");
  if (!text.trim()) {
    list.replaceChildren();
    list.dataset.text = text;
    return;
  }
  let chips;
  try {
    const parsed = await api("POST", "/v1/prompts/parse", { prompt: text });
    chips = parsed.prompts.map(promptChip);
  } catch (error) {
    if (seq !== state.parseSeq) return;
    if (error.status !== 422) {
      list.replaceChildren(); // no answer (offline, no key yet): no chips rather than guesses
      return;
    }
    const chip = document.createElement("li");
    chip.className = "chip invalid";
    chip.dataset.testid = "prompt-chip-error";
    chip.textContent = (error.details[0] && error.details[0].message) || error.message;
    chips = [chip];
  }
  if (seq !== state.parseSeq) return;
  list.replaceChildren(...chips);
  list.dataset.text = text; // what these chips describe (tests wait on it)
}

function promptChip(prompt) {
  const chip = document.createElement("li");
  chip.className = prompt.weight < 0 ? "chip negative" : "chip";
  const stop = prompt.stop === null ? "" : `, stop ${prompt.stop}`;
  const verb = prompt.weight < 0 ? "away from" : "toward";
  chip.textContent = `${verb} "${prompt.text}" ×${Math.abs(prompt.weight)}${stop}`;
  return chip;
}

// With the demo model selected, offer prompts it knows (shapes and colours).
function renderSuggestions() {
  const box = $("#prompt-suggestions");
  const demo = $("#model").value === DEMO_MODEL;
  box.hidden = !demo;
  if (!demo || box.childElementCount) return;
  const label = document.createElement("span");
  label.className = "muted";
  label.textContent = "The demo model paints shapes; try:";
  box.append(label);
  for (const text of DEMO_PROMPTS) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "small suggestion";
    button.textContent = text;
    button.addEventListener("click", () => {
      $("#prompts").value = text;
      renderPromptChips();
    });
    box.append(button);
  }
}

// ---------- the form ----------

function readParams() {
  const params = { prompt: $("#prompts").value.trim() };
  for (const name of NUMBER_FIELDS) {
    const raw = document.getElementById(name).value.trim();
    // An unparsable number is sent as text so the server names the field and the reason.
    params[name] = raw === "" ? null : (Number.isFinite(Number(raw)) ? Number(raw) : raw);
  }
  const seed = $("#seed").value.trim();
  // Seeds go up to 2**63: past 2**53 a JS number would round, so big ones are sent as text.
  params.seed = seed === "" ? null : (Number.isSafeInteger(Number(seed)) ? Number(seed) : seed);
  if ($("#model").value) params.model = $("#model").value;
  if ($("#clip_models").value) params.clip_models = [$("#clip_models").value];
  params.video = $("#video").checked;
  for (const name of Object.keys(params)) {
    if (params[name] === null && name !== "seed") delete params[name];
  }
  return params;
}

function fillForm(params, seed) {
  $("#prompts").value = promptOf(params);
  for (const name of NUMBER_FIELDS) {
    if (params[name] !== undefined && params[name] !== null) {
      document.getElementById(name).value = params[name];
    }
  }
  const usedSeed = seed ?? params.seed;
  $("#seed").value = usedSeed === null || usedSeed === undefined ? "" : usedSeed;
  if (params.model && [...$("#model").options].some((o) => o.value === params.model)) {
    $("#model").value = params.model;
  }
  const clip = (params.clip_models || [])[0];
  if (clip && [...$("#clip_models").options].some((o) => o.value === clip)) {
    $("#clip_models").value = clip;
  }
  $("#video").checked = Boolean(params.video);
  Animations.fill(params);
  syncPreset();
  renderSuggestions();
  renderPromptChips();
}

// A job's prompt text: records say `prompts` (the engine's name), requests may say `prompt`.
function promptOf(params) {
  const prompt = params.prompt ?? params.prompts ?? "";
  return Array.isArray(prompt) ? prompt.join(" | ") : prompt;
}

function syncPreset() {
  const value = `${$("#width").value}x${$("#height").value}`;
  const known = [...$("#size-preset").options].some((o) => o.value === value);
  $("#size-preset").value = known ? value : "custom";
}

function applyPreset() {
  const value = $("#size-preset").value;
  if (value === "custom") {
    $("#width").focus();
    return;
  }
  const [width, height] = value.split("x");
  $("#width").value = width;
  $("#height").value = height;
}

async function loadModels() {
  let catalog;
  try {
    catalog = await api("GET", "/v1/models");
  } catch (error) {
    showMessage(`Could not load the model list: ${describeError(error)}`);
    return;
  }
  fillModelSelect($("#model"), catalog.vqgan || []);
  fillModelSelect($("#clip_models"), catalog.clip || []);
  renderSuggestions();
}

function fillModelSelect(select, models) {
  select.replaceChildren();
  for (const model of models) {
    const option = document.createElement("option");
    option.value = model.name;
    // Not downloaded yet: the server may fetch it on first use, or the job fails saying why.
    option.textContent = model.available ? model.name : `${model.name} (weights not downloaded)`;
    option.title = model.description || "";
    option.selected = Boolean(model.default);
    select.append(option);
  }
  if (!select.options.length) {
    select.append(new Option("Server default", ""));
  }
}

async function submitJob(event) {
  event.preventDefault();
  clearMessage();
  clearFieldErrors();
  const params = readParams();
  const problems = Animations.addFields(params);
  if (problems.length) {
    showFieldErrors(problems);
    showMessage("Please fix the marked fields.");
    return;
  }
  const restyle = params.kind === "restyle";
  const initFile = restyle ? null : state.initFile; // a restyle starts from the video's frames
  let body = params;
  // With files the API takes multipart: `params` as JSON text plus the images (and video).
  if (initFile || state.promptFiles.length || restyle) {
    body = new FormData();
    body.append("params", JSON.stringify(params));
    if (initFile) body.append("init_image", initFile);
    for (const file of state.promptFiles) body.append("image_prompts", file);
    if (restyle) body.append("source_video", Animations.sourceFile());
  }
  const button = $("#submit");
  button.disabled = true;
  button.textContent = "Submitting…";
  try {
    const job = await api("POST", "/v1/jobs", body);
    showJob(job);
    loadGallery(0);
  } catch (error) {
    const unplaced = showFieldErrors(error.details);
    const placed = unplaced.length < error.details.length;
    const extra = unplaced.map((d) => `${d.field ? `${d.field}: ` : ""}${d.message}`).join("; ");
    showMessage(placed ? `Please fix the marked fields.${extra ? ` ${extra}` : ""}`
      : describeError(error));
    const firstInvalid = document.querySelector('[aria-invalid="true"]');
    if (firstInvalid) firstInvalid.focus();
  } finally {
    button.disabled = false;
    button.textContent = Animations.submitLabel();
  }
}

// ---------- files ----------

function thumbnail(file, onRemove) {
  const item = document.createElement("div");
  item.className = "thumb";
  const img = document.createElement("img");
  img.alt = file.name;
  img.src = URL.createObjectURL(file);
  img.onload = () => URL.revokeObjectURL(img.src);
  const remove = document.createElement("button");
  remove.type = "button";
  remove.textContent = "×";
  remove.title = `Remove ${file.name}`;
  remove.setAttribute("aria-label", `Remove ${file.name}`);
  remove.addEventListener("click", onRemove);
  item.append(img, remove);
  return item;
}

function renderFiles() {
  const init = $("#init-thumbs");
  init.replaceChildren();
  if (state.initFile) {
    init.append(thumbnail(state.initFile, () => {
      state.initFile = null;
      renderFiles();
    }));
  }
  const prompts = $("#prompt-thumbs");
  prompts.replaceChildren();
  state.promptFiles.forEach((file, index) => {
    prompts.append(thumbnail(file, () => {
      state.promptFiles.splice(index, 1);
      renderFiles();
    }));
  });
}

function imagesOnly(files) {
  const images = [...files].filter((file) => file.type.startsWith("image/"));
  if (images.length < files.length) showMessage("Only image files (PNG, JPEG, WebP) can be used.");
  return images;
}

function setupDropzone(zone, input, onFiles) {
  input.addEventListener("change", () => {
    onFiles(imagesOnly(input.files));
    input.value = "";
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    onFiles(imagesOnly(event.dataTransfer.files));
  });
}

// ---------- the job view ----------

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

function stopStream() {
  if (state.stopStream) state.stopStream();
  state.stopStream = null;
}

function stopQueuePoll() {
  clearInterval(state.queuePoll);
  state.queuePoll = null;
}

function followJob(job) {
  const url = job.urls.events || `/v1/jobs/${job.id}/events`;
  // EventSource cannot send X-API-Key, so with a key we read the same SSE stream through fetch.
  state.stopStream = apiKey() ? streamWithFetch(url) : streamWithEventSource(url);
  // SSE carries no queue position, so while queued the job record is re-read every 2 s.
  if (job.status === "queued") {
    state.queuePoll = setInterval(() => {
      if (state.job && state.job.status === "queued") refreshJob();
      else stopQueuePoll();
    }, 2000);
  }
}

function streamWithEventSource(url) {
  const source = new EventSource(url);
  for (const type of EVENT_TYPES) {
    source.addEventListener(type, (event) => onJobEvent(type, JSON.parse(event.data)));
  }
  // EventSource reconnects by itself (with Last-Event-ID); once closed, read the record instead.
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) refreshJob();
  };
  return () => source.close();
}

// SSE over fetch: the same events, parsed line by line; reconnects with Last-Event-ID.
function streamWithFetch(url) {
  const controller = new AbortController();
  let lastId = null;
  const dispatch = (type, data, id) => {
    if (id) lastId = id;
    if (EVENT_TYPES.includes(type) && data) onJobEvent(type, JSON.parse(data));
  };
  const run = async () => {
    while (!controller.signal.aborted) {
      try {
        const headers = { ...authHeaders(), Accept: "text/event-stream" };
        if (lastId) headers["Last-Event-ID"] = lastId;
        const response = await fetch(url, { headers, signal: controller.signal });
        if (!response.ok) throw await errorFrom(response);
        await readEventStream(response.body, dispatch);
      } catch (error) {
        if (controller.signal.aborted) return;
        if (error instanceof ApiError && error.status >= 400 && error.status < 500) {
          showMessage(describeError(error));
          return;
        }
      }
      if (!controller.signal.aborted) await new Promise((r) => setTimeout(r, 1000));
    }
  };
  run();
  return () => controller.abort();
}

async function readEventStream(body, dispatch) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let pending = "";
  let skipNewline = false; // a chunk ended in \r: a \n starting the next one is the same break
  let type = "message";
  let data = [];
  let id = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    const text = skipNewline && value.startsWith("\n") ? value.slice(1) : value;
    skipNewline = text.endsWith("\r");
    const lines = (pending + text).split(/\r\n|\r|\n/);
    pending = lines.pop(); // the last, maybe partial, line waits for the next chunk
    for (const line of lines) {
      if (line === "") {
        dispatch(type, data.join("\n"), id);
        type = "message";
        data = [];
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const fieldValue = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") type = fieldValue;
      else if (field === "data") data.push(fieldValue);
      else if (field === "id") id = fieldValue;
    }
  }
}

async function cancelJob() {
  if (!state.job) return;
  const button = $("#cancel");
  button.disabled = true;
  button.textContent = "Canceling…";
  try {
    const job = await api("POST", `/v1/jobs/${state.job.id}/cancel`);
    // A running job stops within an iteration (the badge says "canceling…" meanwhile); the
    // stream's `done` event finishes the view.
    if (state.job && state.job.id === job.id) updateJob(job);
    refreshCard(job);
  } catch (error) {
    showMessage(describeError(error));
    button.disabled = false;
    button.textContent = "Cancel";
  }
}

function reuseSettings() {
  if (!state.job) return;
  fillForm(state.job.params, state.job.seed);
  showMessage(`Settings loaded (seed ${state.job.seed ?? "random"}). Starting images are not ` +
    "kept: add them again if you want them.", "info");
  $("#job-form").scrollIntoView({ behavior: "smooth" });
}

// ---------- gallery ----------

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

// ---------- start ----------

function setup() {
  $("#api-key").value = apiKey();
  $("#api-key-save").addEventListener("click", () => {
    const key = $("#api-key").value.trim();
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
    showMessage(key ? "API key saved in this browser." : "API key removed.", "info");
    loadModels();
    renderPromptChips();
    loadGallery(0);
  });
  $("#job-form").addEventListener("submit", submitJob);
  $("#prompts").addEventListener("input", schedulePromptChips);
  $("#model").addEventListener("change", renderSuggestions);
  $("#size-preset").addEventListener("change", applyPreset);
  $("#width").addEventListener("input", syncPreset);
  $("#height").addEventListener("input", syncPreset);
  $("#cancel").addEventListener("click", cancelJob);
  $("#reuse").addEventListener("click", reuseSettings);
  $("#download-png").addEventListener("click", downloadWithKey);
  $("#download-video").addEventListener("click", downloadWithKey);
  $("#gallery-refresh").addEventListener("click", () => loadGallery());
  $("#gallery-newer").addEventListener("click", () => loadGallery(state.galleryOffset - PAGE_SIZE));
  $("#gallery-older").addEventListener("click", () => loadGallery(state.galleryOffset + PAGE_SIZE));
  for (const img of [$("#final-image"), $("#preview-image")]) {
    // Small pictures shown large stay crisp instead of blurring.
    img.addEventListener("load", () => img.classList.toggle("pixelated", img.naturalWidth < 200));
  }
  Animations.setup();
  setupDropzone($("#init-drop"), $("#init_image"), (files) => {
    if (files.length) state.initFile = files[0];
    renderFiles();
  });
  setupDropzone($("#prompt-drop"), $("#image_prompts"), (files) => {
    state.promptFiles.push(...files);
    renderFiles();
  });
  renderPromptChips();
  loadModels();
  // After a reload mid-run, pick the newest active job up again.
  loadGallery(0).then((page) => {
    const active = page && page.items.find((job) => ACTIVE.has(job.status));
    if (active && !state.job) showJob(active);
  });
}

document.addEventListener("DOMContentLoaded", setup);
