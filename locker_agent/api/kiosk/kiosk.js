// The kiosk page: plain JavaScript, no outside fetch. Talks only to this locker's API.
"use strict";

const LANGUAGE_DEFAULT = "en";
const DONE_SCREEN_S = 6;
const COMPLETIONS = {
  picked_up: "done.pickup", return_deposited: "done.return", deposited: "done.generic",
  return_collected: "done.generic", reclaimed: "done.generic",
};

const state = {
  layout: null,
  lang: LANGUAGE_DEFAULT,
  texts: {},
  fallback: {},
  catalogs: {},              // language -> its texts, all read at the start
  said: new Map(),           // element id -> what it says, re-said in another language
  waits: { customer: 0, courier: 0 },  // when each kind of code may be tried again (ms)
  waitSaid: { customer: null, courier: null },  // why the keypad is off, per kind of code
  waitTimer: null,
  mode: "customer",          // the entry screen takes a customer's code or a courier's
  screen: "entry",
  doors: new Map(),          // compartment id -> {place, state: opening|open|closed}
  completion: null,          // the text key of how the opening ended
  heading: null,             // [key, params] of the opening screen's heading
  session: null,             // the courier's session, when signed in
  idleTimer: null,
  doneTimer: null,
  finishTimer: null,
  recent: [],                // the last live messages: a door may open before the answer
  received: 0,               // live messages received so far (numbers them)
};
const RECENT_MAX = 200;

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- texts

function t(key, params = {}) {
  let text = state.texts[key] ?? state.fallback[key] ?? key;
  for (const [name, value] of Object.entries(params)) {
    text = text.split(`{${name}}`).join(String(value));
  }
  return text;
}

async function loadTexts(lang) {
  const response = await fetch(`i18n/${lang}.json`);
  if (!response.ok) throw new Error(`no texts for ${lang}`);
  return response.json();
}

async function loadCatalogs(languages) {
  // every language at once: a switch is instant and the buttons can name each language
  await Promise.all(languages.map(async (lang) => {
    if (state.catalogs[lang]) return;
    try { state.catalogs[lang] = await loadTexts(lang); } catch (error) { /* not offered */ }
  }));
}

// What an element says, kept as how to say it, so a language switch says it again.
function say(id, render) {
  if (render) state.said.set(id, render); else state.said.delete(id);
  const text = render ? render() : "";
  $(id).textContent = text;
  return text;
}

function setLanguage(lang) {
  if (!state.catalogs[lang]) return;
  state.texts = state.catalogs[lang];
  state.lang = lang;
  document.documentElement.lang = lang;
  for (const element of document.querySelectorAll("[data-i18n]")) {
    element.textContent = t(element.dataset.i18n);
  }
  for (const element of document.querySelectorAll("[data-i18n-label]")) {
    element.setAttribute("aria-label", t(element.dataset.i18nLabel));
  }
  for (const button of document.querySelectorAll("#languages button")) {
    button.setAttribute("aria-pressed", String(button.dataset.lang === lang));
  }
  document.title = t("title");
  for (const [id, render] of state.said) $(id).textContent = render();
  $("door-news").textContent = "";  // old news, not to be read out again
  renderEntry();
  renderOpening();
  renderCourier();
}

function languageButtons(languages) {
  const nav = $("languages");
  nav.replaceChildren();
  for (const lang of languages) {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.lang = lang;
    button.lang = lang;
    button.textContent = state.catalogs[lang]?.["lang.button"] ?? lang.toUpperCase();
    button.addEventListener("click", () => { touch(); setLanguage(lang); });
    nav.append(button);
  }
}

// ---------------------------------------------------------------- the API

async function api(method, path, body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers["content-type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, options);
  } catch (error) {
    return { status: 0, body: { ok: false, reason: "network", message: t("error.network") } };
  }
  let data = {};
  try { data = await response.json(); } catch (error) { data = {}; }
  return { status: response.status, body: data };
}

function reasonText(body) {
  const reason = body.reason ?? body.code;
  if (reason === "network") return t("error.network");
  const key = `reasons.${reason}`;
  if (state.texts[key] || state.fallback[key]) {
    return t(key, { seconds: Math.ceil(body.retry_after_s ?? 0) });
  }
  return body.message || t("reasons.unknown");
}

// ---------------------------------------------------------------- screens

function show(screen) {
  state.screen = screen;
  for (const section of document.querySelectorAll(".screen")) {
    section.hidden = section.dataset.screen !== screen;
  }
  const focus = {
    entry: "code", done: "done-ok", problem: "problem-ok", courier: "parcel", opening: null,
  }[screen];
  if (focus) $(focus).focus();
  touch();
}

function touch() {
  clearTimeout(state.idleTimer);
  const timeout = (state.layout?.screen_timeout_s ?? 60) * 1000;
  state.idleTimer = setTimeout(idle, timeout);
  // "done" goes back to the start a few seconds after the last touch, not while it is read
  clearTimeout(state.doneTimer);
  if (state.screen === "done") state.doneTimer = setTimeout(backToStart, DONE_SCREEN_S * 1000);
}

function idle() {
  // Never walk away from a door that is still open: the screen tells the person to close it.
  const doorsOpen = [...state.doors.values()].some((door) => door.state !== "closed");
  if (doorsOpen && (state.screen === "opening" || state.session)) { touch(); return; }
  backToStart();
}

function backToStart() {
  clearTimeout(state.doneTimer);
  clearTimeout(state.finishTimer);
  if (state.session) {
    api("POST", `/api/kiosk/courier/sessions/${state.session.session_id}/sign-out`);
  }
  state.session = null;
  state.doors.clear();
  state.completion = null;
  state.mode = "customer";
  $("code").value = "";
  setError(null);
  if (state.lang !== LANGUAGE_DEFAULT) setLanguage(LANGUAGE_DEFAULT);
  renderEntry();
  show("entry");
}

function setError(render) {
  const box = $("entry-error");
  const text = say("entry-error", render);
  box.hidden = !text;
  box.classList.toggle("error", Boolean(text));
}

// ---------------------------------------------------------------- waiting after wrong codes

function secondsLeft(mode = state.mode) {
  return Math.max(0, Math.ceil((state.waits[mode] - performance.now()) / 1000));
}

function startWait(seconds, why) {
  // the API said how long this kind of code must wait: count it down, keypad off till 0
  state.waits[state.mode] = performance.now() + seconds * 1000;
  state.waitSaid[state.mode] = why;
  showWait();
  if (state.screen === "entry") $("entry-wait").focus();
}

function showWait(ended = false) {
  // the entry screen as the wait of its kind of code (customer's or courier's) has it;
  // ``ended``: the countdown on screen just reached 0, so say the keypad is back
  const waiting = secondsLeft() > 0;
  $("code").disabled = waiting;
  $("submit").disabled = waiting;
  for (const key of $("keypad").querySelectorAll("button")) key.disabled = waiting;
  $("entry-wait").hidden = !waiting;
  clearInterval(state.waitTimer);
  if (waiting) {
    say("entry-wait", () => t("wait.left", { seconds: secondsLeft() }));
    setError(state.waitSaid[state.mode]);
    state.waitTimer = setInterval(tickWait, 200);
  } else {
    say("entry-wait", null);
    if (ended) {
      setError(() => t("wait.over"));
      if (state.screen === "entry") $("code").focus();
    }
  }
}

function tickWait() {
  if (secondsLeft() <= 0) { showWait(true); return; }
  const text = t("wait.left", { seconds: secondsLeft() });
  if ($("entry-wait").textContent !== text) $("entry-wait").textContent = text;
}

function renderEntry() {
  const courier = state.mode === "courier";
  $("entry-heading").textContent = t(courier ? "entry.courierHeading" : "entry.heading");
  $("entry-hint").textContent = t(courier ? "entry.courierHint" : "entry.hint");
  $("to-courier").hidden = courier || !state.layout?.courier_mode;
  $("to-customer").hidden = !courier;
  showWait();
}

// ---------------------------------------------------------------- doors

function where(place) {
  return place.row && place.column ? t("place", { row: place.row, column: place.column }) : "";
}

function trackDoors(compartments) {
  state.doors.clear();
  state.completion = null;
  for (const place of compartments) state.doors.set(place.id, { place, state: "opening" });
}

function doorList(list) {
  list.replaceChildren();
  for (const [id, door] of state.doors) {
    const item = document.createElement("li");
    item.dataset.compartment = id;
    item.dataset.state = door.state;
    const name = document.createElement("span");
    name.className = "label";
    name.textContent = door.place.label;
    const place = document.createElement("span");
    place.className = "where";
    place.textContent = where(door.place);
    const status = document.createElement("span");
    status.className = "state";
    status.textContent = t(`door.${door.state}`);
    item.append(name, place, status);
    list.append(item);
  }
}

function openingHeading(prefix) {
  const labels = [...state.doors.values()].map((door) => door.place.label);
  return labels.length === 1
    ? t(`${prefix}One`, { label: labels[0] })
    : t(`${prefix}Many`, { labels: labels.join(", ") });
}

function renderOpening() {
  if (!state.doors.size || state.session) return;
  const labels = [...state.doors.values()].map((door) => door.place.label);
  $("opening-heading").textContent = labels.length === 1
    ? t("open.one", { label: labels[0] }) : t("open.many", { labels: labels.join(", ") });
  doorList($("opening-doors"));
}

function receive(message) {
  state.received += 1;
  state.recent.push({ n: state.received, message });
  if (state.recent.length > RECENT_MAX) state.recent.shift();
  onLive(message);
}

function replaySince(mark) {
  // messages about the doors just opened that came in before the API's answer did
  for (const { n, message } of state.recent) if (n > mark) onLive(message);
}

function announce(door) {
  // one sentence for a screen reader, through the polite live region
  $("door-news").textContent = t("door.news", {
    label: door.place.label, state: t(`door.${door.state}`),
  });
}

function onLive(message) {
  const id = message.compartment?.id;
  if (message.type === "hello") { resync(); return; }
  if (!id || !state.doors.has(id)) return;
  const door = state.doors.get(id);
  if (message.type === "door_opened") { door.state = "open"; announce(door); }
  else if (message.type === "door_closed") { door.state = "closed"; announce(door); }
  else if (COMPLETIONS[message.type]) state.completion = COMPLETIONS[message.type];
  else if (message.type === "door_jammed") say(noteId(), () => t("problem.jammedRetry"));
  else if (message.type === "unlock_abandoned") { doorFailed(id); return; }
  else return;
  touch();
  if (state.session) { renderCourier(); } else { renderOpening(); }
  if ([...state.doors.values()].every((d) => d.state === "closed")) {
    clearTimeout(state.finishTimer);
    // the completion event follows its door_closed in the same commit
    state.finishTimer = setTimeout(allClosed, 250);
  }
}

function noteId() { return state.session ? "courier-message" : "opening-note"; }

function doorFailed(id) {
  state.doors.delete(id);
  if (state.session) {
    say("courier-message", () => t("problem.notOpened"));
    renderCourier();
    return;
  }
  say("problem-heading", () => t("problem.notOpened"));
  show("problem");
}

function allClosed() {
  if (state.session) {
    state.doors.clear();
    say("courier-message", () => t("courier.closed"));
    refreshSession();
    return;
  }
  if (state.screen !== "opening") return;
  state.completion = state.completion ?? "done.generic";
  const completion = state.completion;
  say("done-heading", () => t(completion));
  show("done");  // and back to the start DONE_SCREEN_S after the last touch
}

async function resync() {
  // after a (re)connect, read the doors: a close missed while offline still counts
  if (!state.doors.size) return;
  const { status, body } = await api("GET", "/api/kiosk/doors");
  if (status !== 200) return;
  for (const door of body) {
    const tracked = state.doors.get(door.id);
    if (!tracked) continue;
    if (door.door === "open") tracked.state = "open";
    else if (!door.opening && tracked.state === "open") {
      onLive({ type: "door_closed", compartment: { id: door.id } });
    }
  }
}

function connectLive() {
  const source = new EventSource("/api/kiosk/live");
  source.onmessage = (event) => {
    let message;
    try { message = JSON.parse(event.data); } catch (error) { return; }
    receive(message);
  };
}

// ---------------------------------------------------------------- code entry

function typeKey(key) {
  const input = $("code");
  if (input.disabled) return;
  if (key === "clear") input.value = "";
  else if (key === "back") input.value = input.value.slice(0, -1);
  else if (input.value.length < 300) input.value += key;
  setError(null);
  touch();
}

async function submitCode() {
  const text = $("code").value.trim();
  if (!text || secondsLeft() > 0) return;
  const courier = state.mode === "courier";
  const path = courier ? "/api/kiosk/courier/sign-in"
    : /^\d+$/.test(text) ? "/api/kiosk/code" : "/api/kiosk/scan";
  const body = courier || /^\d+$/.test(text) ? { code: text } : { payload: text };
  $("submit").disabled = true;
  const mark = state.received;
  const { body: outcome } = await api("POST", path, body);
  $("submit").disabled = false;
  $("code").value = "";
  if (!outcome.ok) { refused(outcome); return; }
  setError(null);
  if (courier) { startCourier(outcome.session); return; }
  trackDoors(outcome.compartments ?? []);
  say("opening-note", null);
  renderOpening();
  show("opening");
  replaySince(mark);
}

function refused(outcome) {
  const wait = Number(outcome.retry_after_s ?? 0);
  if (wait > 0) {
    // the code was wrong and the next try must wait (or the wait was already on): say both
    const reason = outcome.reason === "locked_out" ? null : outcome;
    startWait(wait, () => (reason ? `${reasonText(reason)} ` : "") + t("wait.why"));
    return;
  }
  setError(() => reasonText(outcome));
  $("code").focus();
}

// ---------------------------------------------------------------- courier

function startCourier(session) {
  state.session = session;
  state.doors.clear();
  say("courier-message", null);
  renderCourier();
  show("courier");
}

function renderCourier() {
  const session = state.session;
  if (!session) return;
  $("courier-heading").textContent = t("courier.heading", { courier: session.courier_id });
  const list = $("to-deposit");
  list.replaceChildren();
  for (const parcel of session.to_deposit) {
    const item = document.createElement("li");
    const code = document.createElement("span");
    code.textContent = parcel.barcode ?? parcel.assignment_id;
    const size = document.createElement("span");
    size.textContent = t("courier.size", { size: parcel.size });
    const place = document.createElement("span");
    place.className = "where";
    place.textContent = parcel.compartment ? parcel.compartment.label : "";
    item.append(code, size, place);
    list.append(item);
  }
  if (!session.to_deposit.length) {
    const item = document.createElement("li");
    item.textContent = t("courier.nothing");
    list.append(item);
  }
  const returns = session.returns_to_collect.length;
  const expired = session.expired_to_reclaim.length;
  $("collect-returns").textContent = t("courier.collect", { count: returns });
  $("collect-returns").disabled = returns === 0;
  $("reclaim-expired").textContent = t("courier.reclaim", { count: expired });
  $("reclaim-expired").disabled = expired === 0;
  const panel = $("courier-open");
  panel.hidden = state.doors.size === 0;
  if (state.doors.size) {
    doorList($("courier-doors"));
    say("courier-message", () => openingHeading("courier.open"));
  }
}

async function courierStep(path, body) {
  touch();
  const session = state.session;
  if (!session) return;
  const mark = state.received;
  const { status, body: outcome } = await api(
    "POST", `/api/kiosk/courier/sessions/${session.session_id}/${path}`, body);
  if (status === 404) { sessionEnded(); return; }
  if (outcome.session) state.session = outcome.session;
  if (!outcome.ok) {
    say("courier-message", () => reasonText(outcome));
    renderCourier();
    return;
  }
  if (outcome.compartments?.length) trackDoors(outcome.compartments);
  renderCourier();
  replaySince(mark);
}

async function refreshSession() {
  const session = state.session;
  if (!session) return;
  const { status, body } = await api("GET", `/api/kiosk/courier/sessions/${session.session_id}`);
  if (status === 404) { sessionEnded(); return; }
  if (status === 200) { state.session = body; renderCourier(); }
}

function sessionEnded() {
  state.session = null;
  state.doors.clear();
  say("problem-heading", () => t("problem.sessionEnded"));
  show("problem");
}

function reportProblem(problem) {
  const open = [...state.doors.keys()];
  if (open.length !== 1) return;
  courierStep("problem", { compartment_id: open[0], problem });
}

// ---------------------------------------------------------------- wiring

function wire() {
  $("keypad").addEventListener("click", (event) => {
    const key = event.target.closest("button")?.dataset.key;
    if (key) { typeKey(key); $("code").focus(); }
  });
  $("entry-form").addEventListener("submit", (event) => { event.preventDefault(); submitCode(); });
  $("code").addEventListener("input", () => { setError(null); touch(); });
  $("to-courier").addEventListener("click", () => {
    state.mode = "courier"; setError(null); renderEntry(); $("code").focus(); touch();
  });
  $("to-customer").addEventListener("click", () => backToStart());
  $("done-ok").addEventListener("click", () => backToStart());
  $("problem-ok").addEventListener("click", () => backToStart());
  $("parcel-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const parcel = $("parcel").value.trim();
    if (parcel) { $("parcel").value = ""; courierStep("deposit", { parcel }); }
  });
  $("doesnt-fit").addEventListener("click", () => reportProblem("doesnt_fit"));
  $("door-broken").addEventListener("click", () => reportProblem("door_broken"));
  $("collect-returns").addEventListener("click", () => courierStep("collect-returns"));
  $("reclaim-expired").addEventListener("click", () => courierStep("reclaim-expired"));
  $("sign-out").addEventListener("click", () => backToStart());
  document.addEventListener("keydown", (event) => {
    touch();
    if (event.key === "Escape") {
      if (state.screen === "entry") {
        if ($("code").value) typeKey("clear"); else if (state.mode === "courier") backToStart();
      } else if (state.screen === "courier") {
        if ($("parcel").value) $("parcel").value = ""; else backToStart();
      } else if (state.screen !== "opening") {
        backToStart();
      }
      event.preventDefault();
      return;
    }
    // digits typed anywhere on the start screen go into the code
    if (state.screen === "entry" && document.activeElement !== $("code")
        && /^[0-9]$/.test(event.key)) {
      typeKey(event.key);
      $("code").focus();
      event.preventDefault();
    }
  });
  for (const name of ["pointerdown", "touchstart"]) {
    document.addEventListener(name, touch, { passive: true });
  }
}

async function main() {
  wire();
  state.fallback = await loadTexts(LANGUAGE_DEFAULT);
  state.catalogs[LANGUAGE_DEFAULT] = state.fallback;
  state.texts = state.fallback;
  const { status, body } = await api("GET", "/api/kiosk/layout");
  if (status === 200) state.layout = body;
  const languages = state.layout?.languages ?? [LANGUAGE_DEFAULT];
  await loadCatalogs(languages);
  languageButtons(languages.filter((lang) => state.catalogs[lang]));
  setLanguage(LANGUAGE_DEFAULT);
  connectLive();
  document.body.dataset.ready = "true";
  show("entry");
}

main();
