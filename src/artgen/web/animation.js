// artgen web page: animations and restyled videos (kind "animation" / "restyle" of POST /v1/jobs).
// The kind chooser, the frame fields and their hints, "frame k of N" and the finished video; app.js
// calls these (one object, no other globals).
"use strict";

const Animations = (() => {
  const TITLES = { picture: "New picture", animation: "New animation", restyle: "Restyle a video" };
  const SUBMIT_LABELS = { picture: "Generate", animation: "Animate", restyle: "Restyle" };
  const NUMBER_FIELDS = ["iterations_per_frame", "frames", "fps", "coherence"];
  const SCHEDULE_FIELDS = ["zoom", "angle", "translation_x", "translation_y"];
  // The fields each kind sends: the API refuses the rest (a restyle takes its frames, fps and
  // motion from the video).
  const KIND_FIELDS = {
    picture: [],
    animation: ["iterations_per_frame", "frames", "fps", ...SCHEDULE_FIELDS, "prompt_schedule"],
    restyle: ["iterations_per_frame", "coherence", "prompt_schedule"],
  };
  const FIELD_NAMES = ["kind", "source_video", ...NUMBER_FIELDS, ...SCHEDULE_FIELDS,
    "prompt_schedule"];
  const PARAM_LABELS = {
    kind: "Kind", frames: "Frames", iterations_per_frame: "Iterations per frame", fps: "FPS",
    zoom: "Zoom", angle: "Rotation", translation_x: "Shift right", translation_y: "Shift down",
    coherence: "Coherence", prompt_schedule: "Prompt changes",
  };
  const SCHEDULE_LINE = /^\s*(\d+)\s*:\s*(.*\S)\s*$/;

  const byId = (id) => document.getElementById(id);

  function kind() {
    const checked = document.querySelector('input[name="kind"]:checked');
    return checked ? checked.value : "picture";
  }

  function isAnimated(job) {
    return Boolean(job && job.kind && job.kind !== "picture");
  }

  function submitLabel() {
    return SUBMIT_LABELS[kind()];
  }

  // Shows the fields of the chosen kind and hides the others.
  function applyKind() {
    const value = kind();
    byId("form-title").textContent = TITLES[value];
    byId("frames-fields").hidden = value === "picture";
    byId("animation-fields").hidden = value !== "animation";
    byId("animation-counts").hidden = value !== "animation";
    byId("restyle-fields").hidden = value !== "restyle";
    byId("init-block").hidden = value === "restyle"; // a restyle starts from the video's frames
    byId("video-block").hidden = value !== "picture"; // the timelapse is a picture's
    byId("iterations-label").textContent = value === "picture" ? "Iterations"
      : "Iterations of frame 0";
    byId("submit").textContent = submitLabel();
  }

  function setup() {
    for (const radio of document.querySelectorAll('input[name="kind"]')) {
      radio.addEventListener("change", applyKind);
    }
    applyKind();
  }

  // "40: a stormy sea" lines -> [{frame, prompt}], with a problem per line that does not parse.
  function parseSchedule(text) {
    const entries = [];
    const problems = [];
    text.split("\n").forEach((line, index) => {
      if (!line.trim()) return;
      const match = SCHEDULE_LINE.exec(line);
      if (match) entries.push({ frame: Number(match[1]), prompt: match[2] });
      else problems.push(`Line ${index + 1}: write "frame: prompts", e.g. "40: a stormy sea".`);
    });
    return { entries, problems };
  }

  function formatSchedule(entries) {
    return (entries || []).map((entry) => `${entry.frame}: ${entry.prompt}`).join("\n");
  }

  function sourceFile() {
    return byId("source_video").files[0] || null;
  }

  // Adds the chosen kind's fields to `params`; returns the problems the page can see itself
  // ({field, message}), which are shown like the server's.
  function addFields(params) {
    const value = kind();
    const problems = [];
    if (value === "picture") return problems;
    params.kind = value;
    delete params.video;
    for (const name of KIND_FIELDS[value]) {
      const raw = byId(name).value.trim();
      if (raw === "") continue;
      if (name === "prompt_schedule") {
        const schedule = parseSchedule(byId(name).value);
        params.prompt_schedule = schedule.entries;
        for (const message of schedule.problems) problems.push({ field: name, message });
      } else if (NUMBER_FIELDS.includes(name)) {
        // An unparsable number is sent as text so the server names the field and the reason.
        params[name] = Number.isFinite(Number(raw)) ? Number(raw) : raw;
      } else {
        params[name] = raw;
      }
    }
    if (value === "restyle" && !sourceFile()) {
      problems.push({ field: "source_video", message: "Choose the video to restyle." });
    }
    return problems;
  }

  // The form filled from a job's params ("Reuse these settings").
  function fill(params) {
    const value = params.kind || "picture";
    const radio = byId(`kind-${value}`);
    if (radio) radio.checked = true;
    for (const name of [...NUMBER_FIELDS, ...SCHEDULE_FIELDS]) {
      if (params[name] !== undefined && params[name] !== null) byId(name).value = params[name];
    }
    byId("prompt_schedule").value = formatSchedule(params.prompt_schedule);
    applyKind();
  }

  function formatParam(name, value) {
    if (name === "prompt_schedule") return formatSchedule(value).replaceAll("\n", "; ");
    return null;
  }

  // "Frame 3 of 30 · iteration 4 / 10" from a job record, updated by a progress event's fields.
  function frameProgress(job, data = {}) {
    const params = job.params || {};
    const frames = data.frames ?? job.frames ?? params.frames;
    const frame = data.frame ?? job.frame;
    if (frame === null || frame === undefined || !frames) return "";
    const first = params.iterations;
    const perFrame = params.iterations_per_frame;
    const iteration = data.iteration ?? job.iteration ?? 0;
    const shown = Math.min(frame, frames - 1);
    const total = data.frame_iterations ?? (shown === 0 ? first : perFrame);
    const start = shown === 0 ? 0 : first + (shown - 1) * perFrame;
    const within = data.frame_iteration ?? Math.max(0, Math.min(total, iteration - start));
    const step = Number.isFinite(within) && total ? ` · iteration ${within} / ${total}` : "";
    return `Frame ${shown + 1} of ${frames}${step}`;
  }

  // Under the live preview of an animation: which frame it is.
  function previewCaption(job, data) {
    const frame = data.frame ?? job.frame;
    if (frame === null || frame === undefined) return `Iteration ${data.iteration}`;
    const frames = job.frames ?? (job.params || {}).frames;
    return `Latest frame: ${Math.min(frame + 1, frames || Infinity)}${frames ? ` of ${frames}` : ""}`;
  }

  function canceledNote(job) {
    const done = job.frames_done || 0;
    const video = job.urls && job.urls.video ? " the video holds the frames made so far" : "";
    return `Canceled after ${done} of ${job.frames || "?"} frames${video ? `:${video}` : ""}.`;
  }

  return {
    FIELD_NAMES, PARAM_LABELS, addFields, applyKind, canceledNote, fill, formatParam,
    frameProgress, isAnimated, kind, previewCaption, setup, sourceFile, submitLabel,
  };
})();
