// artgen web page: constants, page state, the /v1 API client, messages and field errors.
// Plain scripts over the documented API (docs/architecture.md), no build step: index.html loads
// animation.js, core.js, form.js, job.js, events.js, gallery.js, then app.js (the setup).
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
// The demo model (`--model demo`) knows coloured shapes on coloured backgrounds: prompts it paints
// (each judged right in the README's grid, docs/demo-grid.png).
const DEMO_MODEL = "demo";
const DEMO_PROMPTS = ["a green circle on a purple background", "a black triangle on a purple background",
  "a black circle on a yellow background", "a blue triangle on a yellow background"];
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
