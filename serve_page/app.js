// The try-it page: a drawing or a dropped image file goes to the server's TF Serving :predict endpoint as
// base64, exactly as any client would send it, and the five likeliest classes come back with the latency.
// A server started with a token (serve.py --token_file) answers 401 without it: the page then asks for the token
// once, keeps it for this tab (sessionStorage, gone when the tab closes) and sends it with every call.
"use strict";
const api = "/v1/models/" + encodeURIComponent(document.querySelector('meta[name="model"]').content);
const $ = (id) => document.getElementById(id);
const canvas = $("canvas");
const strokes = [];
let classNames = [];
let inputShape = [28, 28, 1];
let asked = 0;
let token = sessionStorage.getItem("token");

// A call to the REST API, with the token when there is one; a 401 shows the form that asks for it.
async function call(path, options = {}) {
  const headers = { ...options.headers, ...(token ? { Authorization: "Bearer " + token } : {}) };
  const response = await fetch(api + path, { ...options, headers });
  if (response.status === 401) {
    if (token) $("asking").textContent = "That token was refused; the right one:";
    $("login").hidden = false;
    $("token").focus();
  }
  return response;
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("token").value.trim();
  sessionStorage.setItem("token", token);
  $("login").hidden = true;
  start().catch((error) => showError(String(error)));
});

async function start() {
  const response = await call("/metadata");
  const answer = await response.json();
  if (!response.ok) return showError(answer.error);
  $("error").textContent = "";
  ({ class_names: classNames, input_shape: inputShape } = answer.metadata);
  $("about").textContent = `${answer.metadata.model_file} (${answer.metadata.kind}), input ` +
    `${inputShape.join("×")}, ${classNames.length} classes`;
  $("draw").hidden = inputShape[2] !== 1;
  paint();
}

// --- drawing: strokes are kept as points, so they can be repainted in either colour and fitted to the box

function render(context, width, height, place, lineWidth) {
  const [background, ink] = $("invert").checked ? ["#fff", "#000"] : ["#000", "#fff"];
  context.fillStyle = background;
  context.fillRect(0, 0, width, height);
  Object.assign(context, { strokeStyle: ink, lineWidth, lineCap: "round", lineJoin: "round" });
  for (const stroke of strokes) {
    context.beginPath();
    context.moveTo(...place(stroke[0]));
    stroke.forEach((point) => context.lineTo(...place(point)));
    context.stroke();
  }
}

function paint() {
  render(canvas.getContext("2d"), canvas.width, canvas.height, (point) => point, 14);
}

// QuickDraw's bitmaps show each drawing scaled to fill its square, so the drawing is cut to its bounding box
// and centred before it is sent; the server then resizes it with the same prepare() as training.
function fitted() {
  const [height, width] = inputShape;
  const [w, h] = [width * 4, height * 4];
  const points = strokes.flat();
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const [left, right, top, bottom] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const scale = 0.88 * Math.min(w, h) / Math.max(right - left, bottom - top, 1);
  const place = ([x, y]) => [w / 2 + (x - (left + right) / 2) * scale, h / 2 + (y - (top + bottom) / 2) * scale];
  const sent = document.createElement("canvas");
  [sent.width, sent.height] = [w, h];
  render(sent.getContext("2d"), w, h, place, 0.09 * Math.min(w, h));
  return sent.toDataURL("image/png");
}

function point(event) {
  const box = canvas.getBoundingClientRect();
  return [(event.clientX - box.left) * canvas.width / box.width,
    (event.clientY - box.top) * canvas.height / box.height];
}

canvas.addEventListener("pointerdown", (event) => {
  canvas.setPointerCapture(event.pointerId);
  strokes.push([point(event)]);
  paint();
});
canvas.addEventListener("pointermove", (event) => {
  if (!canvas.hasPointerCapture(event.pointerId)) return;
  strokes.at(-1).push(point(event));
  paint();
});
canvas.addEventListener("pointerup", () => classify(fitted()));
$("clear").addEventListener("click", () => {
  strokes.length = 0;
  paint();
});
$("invert").addEventListener("change", () => {
  paint();
  if (strokes.length) classify(fitted());
});

// --- image files: picked or dropped

function classifyFile(file) {
  const reader = new FileReader();
  reader.onload = () => classify(reader.result);
  reader.readAsDataURL(file);
}

$("file").addEventListener("change", () => $("file").files[0] && classifyFile($("file").files[0]));
$("drop").addEventListener("dragover", (event) => {
  event.preventDefault();
  $("drop").classList.add("over");
});
$("drop").addEventListener("dragleave", () => $("drop").classList.remove("over"));
$("drop").addEventListener("drop", (event) => {
  event.preventDefault();
  $("drop").classList.remove("over");
  if (event.dataTransfer.files[0]) classifyFile(event.dataTransfer.files[0]);
});

// --- the answer

async function classify(dataUrl) {
  const request = ++asked;
  Object.assign($("sent"), { src: dataUrl, hidden: false });
  showError(""); // the last answer is not this image's: it goes until this one's comes
  const started = performance.now();
  try {
    const response = await call(":predict", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ instances: [{ b64: dataUrl.split(",")[1] }] }),
    });
    const answer = await response.json();
    if (request !== asked) return; // a newer drawing or file has been sent since
    if (!response.ok) return showError(answer.error);
    showTop(answer.predictions[0]);
    const server = /dur=([\d.]+)/.exec(response.headers.get("Server-Timing") || "");
    $("latency").textContent = `${(performance.now() - started).toFixed(1)} ms round trip` +
      (server ? `, ${server[1]} ms in the server (decoding and the model)` : "");
  } catch (error) {
    showError(String(error));
  }
}

function showTop(probabilities) {
  const best = probabilities.map((p, i) => [p, i]).sort((a, b) => b[0] - a[0]).slice(0, 5);
  $("error").textContent = "";
  $("top").replaceChildren(...best.map(([p, i]) => {
    const row = document.createElement("li");
    row.innerHTML = '<span class="name"></span><span class="bar"><span></span></span><span class="prob"></span>';
    row.querySelector(".name").textContent = classNames[i] ?? i;
    row.querySelector(".bar span").style.width = `${100 * p}%`;
    row.querySelector(".prob").textContent = `${(100 * p).toFixed(1)}%`;
    return row;
  }));
}

function showError(message) {
  $("top").replaceChildren();
  $("latency").textContent = "";
  $("error").textContent = message;
}

start().catch((error) => showError(String(error)));
