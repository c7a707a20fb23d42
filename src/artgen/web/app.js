// artgen web page: wiring the controls up once the page has loaded (the other scripts define
// what they do).
"use strict";

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
