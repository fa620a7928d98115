// The chat page of `diffutron serve`: sends the conversation to /v1/chat/completions as a stream and
// draws the answer from the server's denoising frames (stream_options.include_denoising). No build
// step, nothing loaded from elsewhere.
"use strict";

const KEY_STORAGE = "diffutron-api-key";

const $ = (id) => document.getElementById(id);
// settings: the sampler settings as the server describes them (GET settings): each field's type,
// default (the model card's), range and choices, and the speed presets.
const state = { model: null, history: [], controller: null, settings: null };

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// ---- API key: asked for once on a 401, kept for this browser tab ---------------------------------

function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE);
}

function askForKey(reason) {
  const dialog = $("key-dialog");
  $("key-reason").textContent = reason;
  $("api-key").value = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      const key = $("api-key").value.trim();
      if (key) sessionStorage.setItem(KEY_STORAGE, key);
      resolve(Boolean(key));
    }, { once: true });
    dialog.showModal();
  });
}

// fetch() with the bearer token; on 401 asks for a key and tries again.
async function apiFetch(path, options = {}) {
  for (;;) {
    const headers = { ...(options.headers || {}) };
    if (apiKey()) headers.Authorization = `Bearer ${apiKey()}`;
    const response = await fetch(path, { ...options, headers });
    if (response.status !== 401) return response;
    const reason = apiKey() ? "The server did not accept this key. Please enter it again."
      : "This server asks for an API key. It is kept in this browser tab only.";
    sessionStorage.removeItem(KEY_STORAGE);
    if (!(await askForKey(reason))) throw new HttpError(401, "an API key is needed to use this server");
  }
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) return body.error.message;
  } catch (ignored) { /* not JSON: fall through */ }
  return `the server answered ${response.status} ${response.statusText}`;
}

// ---- server-sent events -------------------------------------------------------------------------

// The data of each event; aborting the fetch's signal makes the pending read throw.
async function* serverSentData(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let match;
    while ((match = /\r?\n\r?\n/.exec(buffer))) {
      const block = buffer.slice(0, match.index);
      buffer = buffer.slice(match.index + match[0].length);
      const data = block.split(/\r?\n/).filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, "")).join("\n");
      if (data) yield data;
    }
  }
}

// ---- drawing a frame ----------------------------------------------------------------------------

// The server sends the positions that show the answer (frame.visible: cut where the answer ends).
function drawFrame(canvas, frame) {
  const fresh = new Map(frame.committed.map((position, i) => [position, frame.confidence[i]]));
  const nodes = frame.visible.map((token, position) => {
    const span = document.createElement("span");
    if (token === null) {
      span.className = "mask";
    } else if (token === "") {
      span.className = "end"; // a decided token with no text: end of text or padding
    } else {
      span.textContent = token;
      if (fresh.has(position)) {
        span.className = "fresh";
        span.style.setProperty("--confidence", String(fresh.get(position)));
        span.title = `confidence ${fresh.get(position).toFixed(2)}`;
      }
    }
    return span;
  });
  canvas.replaceChildren(...nodes);
}

// ---- the conversation ---------------------------------------------------------------------------

function addTurn(role, text) {
  $("empty").hidden = true;
  const item = document.createElement("li");
  item.className = `turn ${role}`;
  const bubble = document.createElement("div");
  bubble.className = "bubble";
  bubble.textContent = text || "";
  item.append(bubble);
  $("messages").append(item);
  item.scrollIntoView({ block: "end" });
  return item;
}

// The form's inputs for the server's settings: those of the fields this page shows.
function settingInputs() {
  if (!state.settings) throw new Error("the settings have not loaded from the server");
  const form = $("settings-form");
  return Object.entries(state.settings.fields).map(([name, field]) => [name, field, form.querySelector(`#${name}`)])
    .filter(([, , input]) => input);
}

function settings() {
  const inputs = settingInputs();
  const body = { speed: document.querySelector('input[name="speed"]:checked').value };
  for (const [name, field, input] of inputs) {
    if (input.value === "" || name === "seed") continue; // the seed travels as digits (seedDigits)
    if (!input.checkValidity()) throw new Error(`${input.labels[0].textContent}: ${input.validationMessage}`);
    if (field.type === "integer") body[name] = parseInt(input.value, 10);
    else if (field.type === "number") body[name] = parseFloat(input.value);
    else body[name] = input.value;
  }
  return body;
}

// A JSON schema in the settings asks for structured output: the frames then show its skeleton filling.
function responseFormat() {
  const text = $("json-schema").value.trim();
  if (!text) return {};
  let schema;
  try {
    schema = JSON.parse(text);
  } catch (error) {
    throw new Error(`JSON schema: ${error.message}`);
  }
  return { response_format: { type: "json_schema", json_schema: { name: "page", schema } } };
}

// The seed as its digits: a JavaScript number would round seeds above 2^53 and read "1e3" as 1000.
function seedDigits() {
  const field = $("seed");
  const text = field.value.trim();
  if (text === "") return null;
  const largest = BigInt(state.settings.fields.seed.maximum); // sent as digits by the server
  if (!/^[0-9]+$/.test(text) || BigInt(text) > largest) {
    throw new Error(`${field.labels[0].textContent}: give a whole number from 0 to ${largest}, or nothing`);
  }
  return BigInt(text).toString();
}

// The request as JSON, its seed written as digits (JSON.stringify has no exact form for big integers).
function requestJson(request, seed) {
  const json = JSON.stringify(request);
  return seed === null ? json : `${json.slice(0, -1)},"seed":${seed}}`;
}

function resetSettings() {
  document.querySelector(`input[name="speed"][value="${state.settings.speeds[0]}"]`).checked = true;
  for (const [, field, input] of settingInputs()) input.value = field.default ?? "";
}

// The form takes its choices, ranges and defaults from the server's description.
async function loadSettings() {
  const response = await apiFetch("settings");
  if (!response.ok) throw new HttpError(response.status, await errorMessage(response));
  state.settings = await response.json();
  for (const [, field, input] of settingInputs()) {
    if (field.choices) input.replaceChildren(...field.choices.map((choice) => new Option(choice, choice)));
    if (field.minimum !== undefined) input.min = String(field.minimum);
    if (field.maximum !== undefined) input.max = String(field.maximum);
  }
  resetSettings();
}

function setBusy(busy) {
  $("send").hidden = busy;
  $("stop").hidden = !busy;
  $("clear").disabled = busy;
}

function addMeta(item, parts, answer) {
  const meta = document.createElement("div");
  meta.className = "meta";
  const stats = document.createElement("span");
  stats.className = "stats";
  stats.textContent = parts.join(" · ");
  meta.append(stats);
  if (answer) {
    const copy = document.createElement("button");
    copy.type = "button";
    copy.className = "secondary copy";
    copy.textContent = "Copy";
    copy.setAttribute("aria-label", "Copy the answer");
    copy.addEventListener("click", async () => {
      copy.textContent = (await copyText(answer)) ? "Copied" : "Copy failed";
      setTimeout(() => { copy.textContent = "Copy"; }, 1500);
    });
    meta.append(copy);
  }
  item.append(meta);
}

async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch (ignored) { /* fall back below */ }
  }
  const scratch = document.createElement("textarea");
  scratch.value = text;
  scratch.setAttribute("readonly", "");
  scratch.style.position = "fixed";
  scratch.style.opacity = "0";
  document.body.append(scratch);
  scratch.select();
  const copied = document.execCommand("copy");
  scratch.remove();
  return copied;
}

async function send(question) {
  const system = $("system").value.trim();
  const turn = { role: "user", content: question };
  const messages = [...(system ? [{ role: "system", content: system }] : []), ...state.history, turn];
  let request;
  let seed;
  try {
    request = { model: state.model, messages, stream: true,
      stream_options: { include_denoising: true, include_usage: true }, ...settings(), ...responseFormat() };
    seed = seedDigits();
  } catch (error) {
    $("settings").open = true;
    addTurn("assistant error", `Check the settings: ${error.message}`);
    return;
  }
  addTurn("user", question);
  const item = addTurn("assistant", "");
  item.setAttribute("aria-busy", "true");
  const bubble = item.querySelector(".bubble");
  const canvas = document.createElement("div");
  canvas.className = "canvas";
  canvas.setAttribute("aria-hidden", "true");
  bubble.append(canvas);

  const controller = new AbortController();
  state.controller = controller;
  setBusy(true);
  const started = performance.now();
  let answer = "";
  let calls = 0; // frames seen; the text deltas are drawn only by a server that sends none
  let usage = null;
  try {
    const response = await apiFetch("v1/chat/completions", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: requestJson(request, seed),
      signal: controller.signal,
    });
    if (!response.ok) throw new HttpError(response.status, await errorMessage(response));
    for await (const data of serverSentData(response)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message || "the server stopped with an error");
      if (chunk.denoising) {
        calls = Math.max(calls, chunk.denoising.call);
        drawFrame(canvas, chunk.denoising);
      }
      for (const choice of chunk.choices || []) {
        if (choice.delta && choice.delta.content) {
          answer += choice.delta.content;
          if (!calls) canvas.textContent = answer;
        }
      }
      if (chunk.usage) usage = chunk;
    }
    controller.signal.throwIfAborted();
    const seconds = (performance.now() - started) / 1000;
    canvas.replaceChildren(document.createTextNode(answer));
    canvas.removeAttribute("aria-hidden");
    const modelCalls = usage && usage.diffutron ? usage.diffutron.model_calls : calls;
    const tokens = usage ? usage.usage.completion_tokens : null;
    addMeta(item, [`${modelCalls} model calls`, ...(tokens === null ? [] : [`${tokens} tokens`]),
      `${seconds.toFixed(1)} s`], answer);
    state.history.push(turn, { role: "assistant", content: answer });
    $("announcer").textContent = `Diffutron: ${answer}`;
  } catch (error) {
    if (controller.signal.aborted) {
      item.classList.add("stopped");
      addMeta(item, ["stopped", "not part of the conversation"], "");
      $("announcer").textContent = "Stopped.";
    } else {
      item.classList.add("error");
      item.setAttribute("role", "alert");
      canvas.removeAttribute("aria-hidden");
      canvas.textContent = `Error: ${error.message}`;
    }
  } finally {
    item.removeAttribute("aria-busy");
    state.controller = null;
    setBusy(false);
    item.scrollIntoView({ block: "end" });
    $("prompt").focus();
  }
}

async function loadModel() {
  try {
    await loadSettings();
    const response = await apiFetch("v1/models");
    if (!response.ok) throw new HttpError(response.status, await errorMessage(response));
    const models = (await response.json()).data || [];
    if (!models.length) throw new Error("the server lists no model");
    state.model = models[0].id;
    $("model-name").textContent = state.model;
  } catch (error) {
    $("model-name").textContent = `no model: ${error.message}`;
  }
}

function submitPrompt() {
  const field = $("prompt");
  const question = field.value.trim();
  if (!question || state.controller) return;
  field.value = "";
  send(question);
}

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  submitPrompt();
});
$("prompt").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    submitPrompt();
  }
});
$("stop").addEventListener("click", () => state.controller && state.controller.abort());
$("clear").addEventListener("click", () => {
  state.history = [];
  $("messages").replaceChildren();
  $("empty").hidden = false;
});
$("defaults").addEventListener("click", resetSettings);
$("settings").open = window.matchMedia("(min-width: 761px)").matches;
loadModel();
