// artgen web page: following a job (SSE through EventSource, or fetch with an API key), cancel
// and reuse.
"use strict";

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
