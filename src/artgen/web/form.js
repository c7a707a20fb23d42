// artgen web page: the prompt chips, the form (read, fill, submit) and its image files.
"use strict";

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
