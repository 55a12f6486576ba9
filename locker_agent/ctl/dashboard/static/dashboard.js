// The fleet dashboard: one snapshot, then incremental batches over server-sent events.
// Every DOM update touches only the tile, cell or feed line that changed.
"use strict";

const MAX_FEED = 300;
const $ = (id) => document.getElementById(id);
const lockers = new Map();   // id -> summary
const tiles = new Map();     // id -> tile element
const cells = new Map();     // compartment id -> cell element (open locker only)
const events = [];           // newest last
const seenTypes = new Set();
let openLocker = null;
let selected = null;
let stream = null;
let firstRenderDone = false;

const plurals = new Intl.PluralRules("en");
const collator = new Intl.Collator("en", { numeric: true });
const natural = (a, b) => collator.compare(a, b);
const MAX_FRONT = 64;  // rows or columns; a place beyond that is not drawn on the front

// "1 locker", "2 lockers", "0 lockers": every count the page shows goes through here
function count(n, one, other = one + "s") {
  return `${n} ${plurals.select(n) === "one" ? one : other}`;
}

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function ago(iso) {
  if (!iso) return "";
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return "";
  const s = Math.max(0, (Date.now() - t) / 1000);
  if (s < 60) return "just now";
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h`;
  return `${Math.floor(s / 86400)} d`;
}

function presenceText(s) {
  if (s.online === true) return `online · ${ago(s.since)}`;
  if (s.online === false) return `offline · ${ago(s.since)}`;
  return "presence unknown";
}

// ------------------------------------------------------------------ tiles

function makeTile(id) {
  const tile = el("button", "tile");
  tile.type = "button";
  tile.dataset.locker = id;
  tile.append(el("span", "id", id), el("span", "presence"), el("span", "free"),
              el("span", "occ"), el("span", "bar-occ"), el("span", "chips"));
  tile.children[4].append(el("i"));
  tile.addEventListener("click", () => openDetail(id));
  return tile;
}

function fillTile(tile, s) {
  const [, presence, free, occ, bar, chips] = tile.children;
  tile.classList.toggle("offline", s.online === false);
  tile.classList.toggle("unknown", s.online !== true && s.online !== false);
  tile.classList.toggle("out-of-service", s.in_service === false);
  tile.classList.toggle("has-alarm", s.alarms.length > 0);
  tile.dataset.online = String(s.online);
  presence.textContent = presenceText(s) + (s.in_service === false ? " · out of service" : "");
  presence.dataset.since = s.since || "";
  free.textContent = "free " + (Object.entries(s.free_by_size)
    .map(([size, n]) => `${size} ${n}`).join(" · ") || "–");
  const total = s.compartments || 0;
  occ.textContent = `${s.occupied}/${total} occupied` +
    (s.reserved ? ` · ${s.reserved} reserved` : "") +
    (s.out_of_service ? ` · ${s.out_of_service} out of service` : "") +
    (s.doors_open ? ` · ${count(s.doors_open, "door")} open` : "");
  bar.firstChild.style.width = total ? `${Math.round(100 * s.occupied / total)}%` : "0";
  chips.replaceChildren(...s.alarms.map((a) => {
    const chip = el("span", "chip alarm" + (a.kind === "outbox_high" ? " backlog" : ""),
                    a.compartment_id ? `${a.label} ${a.compartment_id}` : a.label);
    chip.dataset.kind = a.kind;
    return chip;
  }));
  tile.hidden = !tileVisible(s);
}

function tileVisible(s) {
  const text = $("tile-filter").value.trim().toLowerCase();
  if (text && !s.id.toLowerCase().includes(text)) return false;
  if ($("tile-alarms").checked && !(s.alarms.length || s.online === false)) return false;
  return true;
}

function upsertLocker(s) {
  lockers.set(s.id, s);
  let tile = tiles.get(s.id);
  if (!tile) {
    tile = makeTile(s.id);
    tiles.set(s.id, tile);
    const after = [...tiles.keys()].filter((k) => natural(k, s.id) > 0).sort(natural)[0];
    $("tiles").insertBefore(tile, after ? tiles.get(after) : null);
  }
  fillTile(tile, s);
  if (openLocker === s.id) fillDetailHead(s);
}

function renderAll(summaries) {
  const fragment = document.createDocumentFragment();
  for (const s of [...summaries].sort((a, b) => natural(a.id, b.id))) {
    lockers.set(s.id, s);
    let tile = tiles.get(s.id);
    if (!tile) { tile = makeTile(s.id); tiles.set(s.id, tile); }
    fillTile(tile, s);
    fragment.append(tile);
  }
  $("tiles").replaceChildren(fragment);
  counts();
}

function counts() {
  let online = 0, offline = 0, alarmed = 0, alarms = 0;
  for (const s of lockers.values()) {
    if (s.online === true) online++; else if (s.online === false) offline++;
    if (s.alarms.length) alarmed++;
    alarms += s.alarms.length;
  }
  $("counts").textContent = `${count(lockers.size, "locker")} · ${online} online · ` +
    `${offline} offline · ` + (alarms ? `${count(alarms, "alarm")} on ${count(alarmed, "locker")}` : "no alarms");
}

// ------------------------------------------------------------------ event feed

function feedLine(e) {
  const li = el("li", e.alarm ? "alarm" : "");
  li.dataset.locker = e.locker_id;
  li.dataset.type = e.type;
  const at = e.at ? new Date(e.at) : null;
  li.append(el("time", "", at && !Number.isNaN(at.getTime()) ? at.toLocaleTimeString() : ""));
  li.append(document.createTextNode(
    `${e.locker_id} ${e.type}` + (e.compartment_id ? ` ${e.compartment_id}` : "") +
    (e.assignment_id ? ` (${e.assignment_id})` : "")));
  return li;
}

function feedMatches(e) {
  const locker = $("feed-locker").value.trim().toLowerCase();
  const type = $("feed-type").value;
  if (locker && !e.locker_id.toLowerCase().includes(locker)) return false;
  if (type && e.type !== type) return false;
  if ($("feed-alarms").checked && !e.alarm) return false;
  return true;
}

function noteType(type) {
  if (seenTypes.has(type)) return;
  seenTypes.add(type);
  const options = [...seenTypes].sort();
  const select = $("feed-type");
  const option = el("option", "", type);
  option.value = type;
  const next = options[options.indexOf(type) + 1];
  select.insertBefore(option, next ? select.querySelector(`option[value="${CSS.escape(next)}"]`) : null);
}

function addEvents(list) {
  const feed = $("feed");
  for (const e of list) {
    events.push(e);
    noteType(e.type);
    if (feedMatches(e)) feed.prepend(feedLine(e));
  }
  if (events.length > 2000) events.splice(0, events.length - 2000);
  while (feed.childElementCount > MAX_FEED) feed.lastElementChild.remove();
}

function refilterFeed() {
  const lines = [];
  for (let i = events.length - 1; i >= 0 && lines.length < MAX_FEED; i--) {
    if (feedMatches(events[i])) lines.push(feedLine(events[i]));
  }
  $("feed").replaceChildren(...lines);
}

// ------------------------------------------------------------------ one locker

function fillDetailHead(s) {
  $("detail-presence").textContent = presenceText(s) + (s.in_service === false ? " · out of service" : "");
  $("detail-alarm-count").textContent = count(s.alarms.length, "alarm");
  $("detail-alarm-count").hidden = !s.alarms.length;
  $("detail-alarms").replaceChildren(...s.alarms.map((a) => {
    const li = el("li", "", `${a.label}${a.compartment_id ? " " + a.compartment_id : ""}` +
                  (a.detail ? ` (${a.detail})` : ""));
    li.dataset.kind = a.kind;
    const ack = el("button", "quiet", "Acknowledge");
    ack.type = "button";
    ack.addEventListener("click", () => acknowledge(s.id, a.key));
    li.append(ack);
    return li;
  }));
}

// ------------------------------------------------------------------ the locker's front

// [row, column] of a compartment on its locker's front, or null if it publishes none
function frontPlace(c) {
  const ok = (n) => Number.isInteger(n) && n >= 1 && n <= MAX_FRONT;
  return ok(c.row) && ok(c.column) ? [c.row, c.column] : null;
}

// Draws the open locker's cells as its front: each at its row and column (a grid area with no
// compartment stays empty), in reading order for keyboards and screen readers; compartments
// without a place (or on a place taken twice) follow below the front. A locker that places
// none is a flowing grid in natural order of ids (C2 before C10).
function layoutGrid() {
  const grid = $("grid");
  const placed = [], loose = [], taken = new Set();
  let rows = 0, columns = 0;
  for (const cell of [...cells.values()].sort((a, b) => natural(a.compartment.id, b.compartment.id))) {
    const place = frontPlace(cell.compartment);
    if (place && !taken.has(place.join(","))) {
      taken.add(place.join(","));
      placed.push([cell, place]);
      rows = Math.max(rows, place[0]);
      columns = Math.max(columns, place[1]);
    } else {
      loose.push(cell);
    }
  }
  placed.sort(([, a], [, b]) => a[0] - b[0] || a[1] - b[1]);
  const front = placed.length > 0;
  grid.classList.toggle("front", front);
  grid.style.gridTemplateColumns = front ? `repeat(${columns}, minmax(6.5rem, 1fr))` : "";
  grid.setAttribute("aria-label", front
    ? `Compartments, as on the front: ${count(rows, "row")}, ${count(columns, "column")}`
    : "Compartments");
  for (const [cell, [row, column]] of placed) {
    cell.style.gridRow = String(row);
    cell.style.gridColumn = String(column);
    cell.dataset.row = String(row);
    cell.dataset.column = String(column);
    cell.classList.remove("unplaced");
  }
  loose.forEach((cell, i) => {
    cell.style.gridRow = front ? String(rows + 1 + Math.floor(i / columns)) : "";
    cell.style.gridColumn = front ? String(1 + (i % columns)) : "";
    delete cell.dataset.row;
    delete cell.dataset.column;
    cell.classList.toggle("unplaced", front);
  });
  const order = [...placed.map(([cell]) => cell), ...loose];
  if (order.some((cell, i) => grid.children[i] !== cell) || grid.children.length !== order.length) {
    grid.replaceChildren(...order);
  }
}

function makeCell(c) {
  const cell = el("button", "cell");
  cell.type = "button";
  cell.dataset.compartment = c.id;
  cell.append(el("b"), el("span", "state"), el("span", "door"), el("span", "aid"));
  cell.addEventListener("click", () => select(c.id));
  return cell;
}

function fillCell(cell, c) {
  const [label, state, door, aid] = cell.children;
  cell.className = `cell ${c.state}` + (c.door === "open" ? " door-open" : "") +
    (selected === c.id ? " selected" : "") + (cell.classList.contains("unplaced") ? " unplaced" : "");
  cell.dataset.state = c.state;
  cell.dataset.door = c.door;
  label.textContent = `${c.label || c.id} · ${c.size}`;
  state.textContent = c.state.replaceAll("_", " ");
  door.textContent = `door ${c.door}`;
  aid.textContent = (c.assignment_ids || []).join(", ") || (c.out_of_service_reason || "");
  cell.compartment = c;
}

// returns whether the grid must be laid out again (a new compartment, or one that moved)
function upsertCell(c) {
  let cell = cells.get(c.id);
  const moved = !cell || String(frontPlace(cell.compartment)) !== String(frontPlace(c));
  if (!cell) {
    cell = makeCell(c);
    cells.set(c.id, cell);
  }
  fillCell(cell, c);
  if (selected === c.id) fillSelection(c);
  return moved;
}

async function openDetail(id) {
  openLocker = id;
  selected = null;
  cells.clear();
  $("grid").replaceChildren();
  $("grid").classList.remove("front");
  $("grid").style.gridTemplateColumns = "";
  $("compartment-form").hidden = true;
  setReply("", "");
  $("detail-title").textContent = id;
  $("detail").hidden = false;
  fillDetailHead(lockers.get(id));
  const response = await api("GET", `/api/lockers/${encodeURIComponent(id)}`);
  if (!response.ok || openLocker !== id) return;
  const body = await response.json();
  for (const c of body.compartments) upsertCell(c);
  layoutGrid();
}

function closeDetail() {
  openLocker = null;
  $("detail").hidden = true;
}

function select(id) {
  selected = id;
  for (const [cid, cell] of cells) cell.classList.toggle("selected", cid === id);
  $("compartment-form").hidden = false;
  fillSelection(cells.get(id).compartment);
}

function fillSelection(c) {
  $("sel-label").textContent = c.label || c.id;
  $("sel-info").textContent = `${c.size}, ${c.state.replaceAll("_", " ")}, door ${c.door}` +
    ((c.assignment_ids || []).length ? `, holds ${c.assignment_ids.join(", ")}` : "") +
    (c.out_of_service_reason ? ` (${c.out_of_service_reason})` : "");
}

// ------------------------------------------------------------------ actions

function setReply(text, kind) {
  const reply = $("reply");
  reply.textContent = text;
  reply.className = "reply " + kind;
}

async function act(path, body, what) {
  const locker = openLocker;
  setReply(`${what}: waiting for ${locker}…`, "pending");
  const response = await api("POST", `/api/lockers/${encodeURIComponent(locker)}/${path}`, body);
  let result = {};
  try { result = await response.json(); } catch (_) { /* not JSON */ }
  if (openLocker !== locker) return;
  if (response.status === 422 || response.status === 400) {
    const detail = Array.isArray(result.detail) ? result.detail.map((d) => d.msg).join("; ") : result.detail;
    setReply(`${what}: ${detail || "the request is not valid"}`, "refused");
    return;
  }
  setReply(`${what}: ${result.message || response.statusText}`, result.ok ? "ok" : "refused");
  $("reply").dataset.code = result.code || "";
}

function reasonOrAsk() {
  const reason = $("reason").value.trim();
  if (!reason) { setReply("Give a reason first: it is recorded on the locker.", "refused"); $("reason").focus(); }
  return reason;
}

function wireActions() {
  $("act-sync").addEventListener("click", () => act("sync", {}, "Sync"));
  $("act-locker-out").addEventListener("click", () => {
    const reason = prompt(`Why does ${openLocker} go out of service?`);
    if (reason) act("service", { in_service: false, reason }, "Locker out of service");
  });
  $("act-locker-in").addEventListener("click", () => act("service", { in_service: true }, "Locker back in service"));
  $("act-open").addEventListener("click", () => {
    const reason = reasonOrAsk();
    if (reason) act("open", { compartment_id: selected, reason }, `Open ${selected}`);
  });
  $("act-out").addEventListener("click", () => {
    const reason = reasonOrAsk();
    if (reason) act("service", { compartment_id: selected, in_service: false, reason }, `${selected} out of service`);
  });
  $("act-in").addEventListener("click", () => act("service", { compartment_id: selected, in_service: true }, `${selected} back in service`));
  $("detail-close").addEventListener("click", closeDetail);
  $("detail").addEventListener("click", (e) => { if (e.target === $("detail")) closeDetail(); });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") closeDetail(); });
}

async function acknowledge(locker, key) {
  await api("POST", `/api/lockers/${encodeURIComponent(locker)}/alarms/${encodeURIComponent(key)}/acknowledge`, {});
}

// ------------------------------------------------------------------ stream and sign-in

function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) { init.body = JSON.stringify(body); init.headers["Content-Type"] = "application/json"; }
  return fetch(path, init).then((response) => {
    if (response.status === 401) showSignIn();
    return response;
  });
}

function connect() {
  if (stream) stream.close();
  stream = new EventSource("/api/stream");
  stream.addEventListener("snapshot", (message) => {
    const snapshot = JSON.parse(message.data);
    renderAll(snapshot.lockers);
    events.length = 0;
    $("feed").replaceChildren();
    addEvents(snapshot.events);
    $("link").textContent = "live";
    $("link").classList.remove("down");
    if (!firstRenderDone) {
      firstRenderDone = true;
      requestAnimationFrame(() => {
        window.dashboardFirstRender = { ms: performance.now(), tiles: tiles.size };
        document.body.dataset.rendered = String(tiles.size);
      });
    }
  });
  stream.addEventListener("batch", (message) => {
    const batch = JSON.parse(message.data);
    for (const s of batch.lockers) upsertLocker(s);
    let moved = false;
    if (openLocker) for (const c of batch.compartments) if (c.locker_id === openLocker) moved = upsertCell(c) || moved;
    if (moved) layoutGrid();
    addEvents(batch.events);
    if (batch.lockers.length) counts();
  });
  stream.onerror = () => {
    $("link").textContent = "reconnecting…";
    $("link").classList.add("down");
    api("GET", "/api/session");
  };
}

function showSignIn() {
  if (stream) { stream.close(); stream = null; }
  openLocker = null;
  $("app").hidden = true;
  $("detail").hidden = true;
  $("sign-in-page").hidden = false;
}

function showApp(operator) {
  $("operator").textContent = operator;
  $("sign-in-page").hidden = true;
  $("app").hidden = false;
  connect();
}

async function start() {
  wireActions();
  $("sign-in").addEventListener("submit", async (e) => {
    e.preventDefault();
    const form = new FormData(e.target);
    const response = await fetch("/api/session", {
      method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token: form.get("token") }),
    });
    if (response.ok) {
      $("sign-in-error").textContent = "";
      e.target.reset();
      showApp((await response.json()).operator);
    } else {
      $("sign-in-error").textContent = "Wrong token: that is no operator's token (or the operator was removed).";
    }
  });
  $("sign-out").addEventListener("click", async () => { await api("DELETE", "/api/session"); showSignIn(); });
  const refilterTiles = () => { for (const [id, tile] of tiles) tile.hidden = !tileVisible(lockers.get(id)); };
  $("tile-filter").addEventListener("input", refilterTiles);
  $("tile-alarms").addEventListener("change", refilterTiles);
  for (const id of ["feed-locker", "feed-type", "feed-alarms"]) $(id).addEventListener("input", refilterFeed);
  setInterval(() => {
    for (const tile of tiles.values()) {
      const s = lockers.get(tile.dataset.locker);
      tile.children[1].textContent = presenceText(s) + (s.in_service === false ? " · out of service" : "");
    }
  }, 30000);
  const response = await fetch("/api/session", { credentials: "same-origin" });
  if (response.ok) showApp((await response.json()).operator); else showSignIn();
}

start();
