// The agent page: the agent's desk over REST, the agent's live events (screen-pop, call,
// presence) read from GET /agents/{ext}/events with fetch() (it sends the Authorization header,
// which EventSource cannot). Plain ES2020, no framework, no build step. Every value from the
// server goes in as text.
"use strict";

const KEY = "callcenter.agent.key";
const $ = (selector) => document.querySelector(selector);
const me = { extension: null, name: null };
const current = { callId: null, row: null, state: "idle", other: null, transfer: null };
let wrapRow = null; // the calls row the after-call form is for
let streamAbort = null;
let retry = null;

function apiKey() {
  return sessionStorage.getItem(KEY);
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${apiKey()}` };
  let payload;
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const response = await fetch(path, { method, headers, body: payload });
  const data = response.status === 204 ? {} : await response.json().catch(() => ({}));
  if (response.status === 401) logout("The key was refused or the session ended.");
  if (!response.ok) {
    throw new Error((data.error && data.error.reason) || `${response.status}`);
  }
  return data;
}

function say(text, error = false) {
  const message = $("#message");
  message.textContent = text;
  message.classList.toggle("error", error);
}

async function act(what, work) {
  try {
    const result = await work();
    say("");
    return result;
  } catch (error) {
    say(`${what}: ${error.message}`, true);
    return null;
  }
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text == null ? "" : String(text);
  if (className) td.className = className;
  return td;
}

function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  const today = new Date().toDateString() === date.toDateString();
  return today ? date.toLocaleTimeString() : date.toLocaleString();
}

// A number anywhere on the page: one click calls it (click-to-call; the DNC list and calling
// hours apply as for every click-to-call).
function numberButton(number, task) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "number";
  button.textContent = number;
  button.dataset.number = number;
  button.title = `Call ${number}`;
  button.addEventListener("click", () => callNumber(number, task));
  return button;
}

async function callNumber(number, task) {
  const body = { agent: me.extension, number };
  if (task != null) body.task = task;
  const placed = await act("Call", () => api("POST", "/calls", body));
  if (placed) {
    setCall({ callId: placed.call_id, row: placed.id, state: "ringing", other: number });
    if (placed.warnings && placed.warnings.length) say(`Placed despite: ${placed.warnings.join("; ")}`);
  }
}

// -- login --------------------------------------------------------------------------------------

async function start() {
  const login = new URLSearchParams(location.hash.slice(1)).get("login");
  if (login) {
    history.replaceState(null, "", location.pathname); // the token leaves the address bar
    try {
      const response = await fetch("/agent/session", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ login }),
      });
      const data = await response.json();
      if (!response.ok) throw new Error(data.error ? data.error.reason : `${response.status}`);
      sessionStorage.setItem(KEY, data.session);
    } catch (error) {
      showLogin(`Login link refused: ${error.message}`);
      return;
    }
  }
  if (!apiKey()) {
    showLogin("");
    return;
  }
  try {
    const who = await api("GET", "/agent/me");
    me.extension = who.extension;
    me.name = who.display_name;
  } catch (error) {
    sessionStorage.removeItem(KEY);
    showLogin(error.message);
    return;
  }
  $("#login").hidden = true;
  $("#desk").hidden = false;
  $("#me").textContent = me.name ? `${me.name} (${me.extension})` : me.extension;
  $("#phone-ext").textContent = me.extension;
  for (const id of ["#go-available", "#go-away", "#dnd"]) $(id).disabled = false;
  await refreshDesk();
  stream();
  $("#phone-on").checked = phoneEnabled();
  if (phoneEnabled()) phoneStart();
  else phoneState("disabled");
  refreshSeat(0);
}

function showLogin(error) {
  $("#desk").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = error;
}

async function logout(reason) {
  phoneStop();
  if (streamAbort) streamAbort.abort();
  clearTimeout(retry);
  const key = apiKey();
  sessionStorage.removeItem(KEY);
  if (key && reason === undefined) {
    // An agent session ends on the server too (a configured key stays valid).
    fetch("/agent/session", { method: "DELETE", headers: { Authorization: `Bearer ${key}` } });
  }
  setStatus("offline");
  showLogin(reason || "");
}

// -- the live events ----------------------------------------------------------------------------

function setStatus(status) {
  const badge = $("#status");
  badge.dataset.status = status;
  badge.textContent = status;
}

async function stream() {
  clearTimeout(retry);
  if (streamAbort) streamAbort.abort();
  const abort = new AbortController();
  streamAbort = abort;
  setStatus("connecting");
  try {
    const response = await fetch(`/agents/${encodeURIComponent(me.extension)}/events`, {
      headers: { Authorization: `Bearer ${apiKey()}` },
      signal: abort.signal,
    });
    if (response.status === 401) return logout("The key was refused or the session ended.");
    if (!response.ok) throw new Error(`${response.status}`);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const chunk = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (chunk.startsWith(":")) {
          setStatus("live"); // ": connected" (subscribed) or a keepalive
          continue;
        }
        let kind = "message";
        let data = "";
        for (const line of chunk.split("\n")) {
          if (line.startsWith("event: ")) kind = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        handle(kind, JSON.parse(data || "{}"));
      }
    }
  } catch (error) {
    if (abort.signal.aborted) return;
  }
  if (abort.signal.aborted || !apiKey()) return;
  setStatus("offline");
  retry = setTimeout(() => { stream(); refreshDesk(); }, 2000);
}

function handle(kind, data) {
  if (kind === "screen-pop") {
    if (data.attempt && !data.last_calls) {
      // The dialer's pop (lead, campaign, attempt): the rest comes from the call's pop.
      api("GET", `/calls/${data.call}/pop`).then(showPop, () => showPop(dialerPop(data)));
    } else {
      showPop(data);
    }
    if (current.state === "idle" || current.state === "ended") {
      setCall({ callId: data.call_id, row: data.call, state: "ringing", other: data.number });
    }
  } else if (kind === "call") {
    if ($("#seat").dataset.seated === "yes") refreshSeat(0); // the seat's count of calls
    if (data.state === "talking") {
      setCall({ callId: data.call_id, row: data.call, state: "talking", other: current.other });
    } else if (data.state === "ended" && (current.callId === data.call_id || current.callId === null)) {
      const answered = data.outcome === "answered";
      setCall({ callId: null, row: null, state: answered ? "ended" : "idle", other: current.other });
      if (answered && data.call != null) showWrap(data.call);
      refreshDesk();
    }
  } else if (kind === "presence") {
    showState(data.state);
  }
}

function dialerPop(data) {
  return {
    call: data.call, call_id: data.call_id, number: data.lead ? data.lead.phone : "",
    contact: null, responsible: null, lead: data.lead, last_calls: [], tasks: [],
  };
}

// -- presence -----------------------------------------------------------------------------------

function showState(state) {
  const badge = $("#state");
  badge.dataset.state = state;
  badge.textContent = state;
  badge.className = `state state-${state}`;
  $("#end-wrap").hidden = state !== "wrap-up";
}

async function setPresence(state) {
  const result = await act("Presence", () =>
    api("PUT", `/agents/${me.extension}/presence`, { state }));
  if (result) showState(result.state);
}

async function setDnd(on) {
  await act("Do not disturb", () => api("PUT", `/agents/${me.extension}/forwarding`, { dnd: on }));
  await refreshDesk();
}

// -- the desk -----------------------------------------------------------------------------------

// Bumped by every change of the call the page makes itself (hold, resume...): a desk read that
// was on its way before such a change is older than what the page shows, and must not undo it.
let callEpoch = 0;

async function refreshDesk() {
  const asked = callEpoch;
  const desk = await act("Desk", () => api("GET", `/agents/${me.extension}/desk`));
  if (!desk) return;
  showState(desk.state);
  $("#dnd").checked = desk.dnd;
  if (asked !== callEpoch) {
    // The call changed here meanwhile (hold, resume): what the page shows is newer.
  } else if (desk.call) {
    setCall({ callId: desk.call.call_id, row: desk.call.call, state: desk.call.state,
              other: desk.call.other });
  } else if (current.state !== "ended") {
    setCall({ callId: null, row: null, state: "idle", other: null });
  }
  renderTasks(desk.tasks);
  renderCalls(desk.calls);
}

function renderTasks(tasks) {
  const body = $("#tasks tbody");
  body.replaceChildren();
  for (const task of tasks) {
    const row = body.insertRow();
    row.dataset.task = task.id;
    cell(row, when(task.due_at));
    row.insertCell().append(numberButton(task.contact_phone, task.id));
    cell(row, task.text);
    const done = document.createElement("button");
    done.type = "button";
    done.textContent = "Call back";
    done.className = "call-back";
    done.addEventListener("click", () => callNumber(task.contact_phone, task.id));
    row.insertCell().append(done);
  }
}

function renderCalls(calls) {
  const body = $("#calls tbody");
  body.replaceChildren();
  for (const call of calls) {
    const row = body.insertRow();
    row.dataset.call = call.id;
    cell(row, when(call.started_at));
    cell(row, call.direction);
    const number = call.contact_phone
      || (call.direction === "inbound" ? call.from_number : call.to_number);
    if (call.direction === "internal") cell(row, number);
    else row.insertCell().append(numberButton(number));
    cell(row, call.outcome || "in progress");
    cell(row, call.talk_seconds != null ? Math.round(call.talk_seconds) : "", "num");
    cell(row, [call.disposition, call.disposition_note].filter(Boolean).join(": "));
  }
}

// -- the call -----------------------------------------------------------------------------------

function setCall(next) {
  Object.assign(current, next);
  const section = $("#call");
  section.dataset.state = current.state;
  const badge = $("#call-state");
  badge.textContent = current.state === "idle" ? "" : current.state;
  badge.className = `state state-${current.state}`;
  $("#call-other").textContent = current.state === "idle" ? "No call" : (current.other || "");
  $("#consult").hidden = current.transfer == null;
}

function callPath(action) {
  return `/calls/${encodeURIComponent(current.callId)}/${action}`;
}

async function control(action, body) {
  if (!current.callId) return null;
  const result = await act(action, () => api("POST", callPath(action), body));
  if (result && (result.state === "held" || result.state === "talking")) {
    callEpoch += 1;
    setCall({ state: result.state });
  }
  return result;
}

function buildKeypad() {
  const pad = $("#keypad");
  for (const digit of "123456789*0#") {
    const key = document.createElement("button");
    key.type = "button";
    key.textContent = digit;
    key.dataset.digit = digit;
    key.addEventListener("click", () => control("dtmf", { digits: digit }));
    pad.append(key);
  }
}

async function transfer(event) {
  event.preventDefault();
  const form = event.target;
  const to = form.elements.to.value.trim();
  const mode = form.elements.mode.value;
  const result = await control("transfer", { to, mode });
  if (result && mode === "warm") setCall({ transfer: result.transfer, state: "consulting" });
  if (result && mode === "blind") form.reset();
}

async function consultation(action) {
  if (current.transfer == null) return;
  const result = await act("Transfer", () =>
    api("POST", callPath(`transfer/${current.transfer}/${action}`)));
  if (result) setCall({ transfer: null, state: action === "cancel" ? "talking" : current.state });
}

// -- the screen pop -----------------------------------------------------------------------------

function showPop(pop) {
  $("#pop").hidden = false;
  $("#pop").dataset.call = pop.call;
  const number = $("#pop-number");
  number.replaceChildren();
  if (pop.number && pop.direction !== "internal") number.append(numberButton(pop.number));
  else number.textContent = pop.number || "";
  const contact = pop.contact;
  $("#pop-contact").textContent = contact ? (contact.name || "(no name)") : "unknown caller";
  const manager = pop.responsible;
  $("#pop-responsible").textContent = manager
    ? `${manager.name || ""} (${manager.extension})`.trim() : "";
  $("#pop-did").textContent = [pop.did, pop.ring_group].filter(Boolean).join(" · ");
  const lead = $("#pop-lead");
  const leadBody = lead.tBodies[0];
  leadBody.replaceChildren();
  lead.hidden = !pop.lead;
  if (pop.lead) {
    const fields = [["name", pop.lead.name], ["phone", pop.lead.phone],
                    ...Object.entries(pop.lead.data || {})];
    for (const [name, value] of fields) {
      if (value == null) continue;
      const row = leadBody.insertRow();
      cell(row, name);
      cell(row, typeof value === "object" ? JSON.stringify(value) : value);
    }
  }
  const calls = $("#pop-calls tbody");
  calls.replaceChildren();
  for (const call of pop.last_calls || []) {
    const row = calls.insertRow();
    row.dataset.call = call.id;
    cell(row, when(call.started_at));
    cell(row, call.direction);
    cell(row, call.agent);
    cell(row, call.outcome);
    cell(row, call.disposition);
    cell(row, call.note);
    const play = row.insertCell();
    if (call.recording) {
      const audio = document.createElement("audio");
      audio.controls = true;
      audio.preload = "none";
      audio.src = call.recording;
      play.append(audio);
    }
  }
  const tasks = $("#pop-tasks tbody");
  tasks.replaceChildren();
  for (const task of pop.tasks || []) {
    const row = tasks.insertRow();
    row.dataset.task = task.id;
    cell(row, when(task.due_at));
    cell(row, task.text);
    cell(row, task.assignee);
  }
}

// -- after the call -----------------------------------------------------------------------------

function showWrap(row) {
  wrapRow = row;
  $("#wrap").hidden = false;
  $("#wrap").dataset.call = row;
  $("#wrap-call").textContent = `#${row}`;
  $("#disposition-form").reset();
}

async function dispose(event) {
  event.preventDefault();
  if (wrapRow == null) return;
  const form = event.target;
  const body = { disposition: form.elements.disposition.value };
  const note = form.elements.note.value.trim();
  if (note) body.note = note;
  const at = form.elements.callback_at.value;
  if (at) body.callback_at = new Date(at).toISOString();
  const saved = await act("Disposition", () =>
    api("POST", `/calls/${wrapRow}/disposition`, body));
  if (saved) {
    $("#wrap").hidden = true;
    wrapRow = null;
    setCall({ state: "idle", callId: null, row: null });
    say(saved.callback_task ? "Saved; the callback is in your list." : "Saved.");
    await refreshDesk();
  }
}

// -- the browser phone --------------------------------------------------------------------------
// phone.js speaks SIP; here are its socket (/sip?token=..., re-opened with a new token and a
// growing back-off when it closes), its media (one RTCPeerConnection a call, the microphone,
// the far end in #phone-audio) and what the page shows. The call's other controls (keypad,
// hold, transfer) stay on REST, for this phone and a SIP phone alike.

const phone = {
  ua: null, socket: null, retry: null, backoff: 1000, stopped: true, muted: false,
  seatPending: false,
};
const PHONE_ON = "callcenter.agent.phone"; // "off": calls ring only the agent's SIP phone
const PHONE_STATES = {
  disabled: "off", off: "not registered", connecting: "connecting", registered: "registered",
  ringing: "ringing", answering: "answering", "in-call": "in call",
};

function phoneState(state) {
  $("#phone").dataset.phone = state;
  $("#phone-state").textContent = PHONE_STATES[state] || state;
  $("#phone-answer").disabled = state !== "ringing";
  $("#phone-hangup").disabled = !["ringing", "answering", "in-call"].includes(state);
  $("#phone-mute").disabled = state !== "in-call";
  if (!["ringing", "answering", "in-call"].includes(state)) $("#phone-caller").textContent = "";
}

function iceGathered(pc) {
  // The answer goes out with every candidate in it (no trickle ICE over this SIP).
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, 3000); // a stuck candidate does not hold the call up
    function done() {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    }
    function check() {
      if (pc.iceGatheringState === "complete") done();
    }
    pc.addEventListener("icegatheringstatechange", check);
  });
}

class PageMedia {
  constructor(audio) {
    this.audio = audio;
    this.pc = null;
    this.stream = null;
  }

  async answer(offer) {
    this.close();
    const pc = new RTCPeerConnection({ iceServers: [] });
    this.pc = pc;
    pc.addEventListener("track", (event) => {
      this.audio.srcObject = new MediaStream([event.track]);
      this.audio.play().catch(() => {}); // autoplay refused: the agent's next click plays it
    });
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
    if (this.pc !== pc) {
      for (const track of stream.getTracks()) track.stop();
      throw new Error("the call ended");
    }
    this.stream = stream;
    await pc.setRemoteDescription({ type: "offer", sdp: offer });
    for (const track of stream.getAudioTracks()) {
      track.enabled = !phone.muted;
      pc.addTrack(track, stream);
    }
    return this.negotiate(pc);
  }

  async update(offer) {
    const pc = this.pc;
    if (!pc) throw new Error("no call");
    await pc.setRemoteDescription({ type: "offer", sdp: offer });
    return this.negotiate(pc);
  }

  async negotiate(pc) {
    await pc.setLocalDescription(await pc.createAnswer());
    await iceGathered(pc);
    return pc.localDescription.sdp;
  }

  offer() {
    return this.pc && this.pc.localDescription ? this.pc.localDescription.sdp : "";
  }

  mute(on) {
    if (this.stream) for (const track of this.stream.getAudioTracks()) track.enabled = !on;
  }

  close() {
    if (this.stream) for (const track of this.stream.getTracks()) track.stop();
    if (this.pc) this.pc.close();
    this.pc = null;
    this.stream = null;
    this.audio.srcObject = null;
  }
}

const media = new PageMedia(document.createElement("audio")); // its element: see wiring

function phoneEvent(kind, detail) {
  if (kind === "registered") {
    phone.backoff = 1000;
    if (!phone.ua.call) phoneState("registered");
  } else if (kind === "unregistered") {
    if (phone.socket) phone.socket.close(); // a refused REGISTER: a new socket, a new token
  } else if (kind === "incoming") {
    const caller = detail.caller;
    $("#phone-caller").textContent =
      caller.name && caller.name !== caller.user ? `${caller.name} (${caller.user})` : caller.user;
    phoneState(detail.autoAnswer ? "answering" : "ringing");
  } else if (kind === "answered") {
    phoneState("answering");
  } else if (kind === "confirmed") {
    phoneState("in-call");
    if (phone.seatPending) refreshSeat(10);
  } else if (kind === "ended") {
    setMute(false);
    phoneState(phone.ua && phone.ua.registered ? "registered" : "off");
    if (phone.seatPending || $("#seat").dataset.seated !== "no") refreshSeat(0);
  } else if (kind === "error") {
    say(`Phone: ${detail.reason}`, true);
  }
}

async function phoneStart() {
  clearTimeout(phone.retry);
  phone.stopped = false;
  const old = phone.socket;
  phone.socket = null;
  if (old) old.close();
  phoneState("connecting");
  let login;
  try {
    login = await api("POST", "/sip/token", {});
  } catch (error) {
    phoneRetry();
    return;
  }
  if (phone.stopped) return;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}${login.path}`, "sip");
  socket.binaryType = "arraybuffer";
  const ua = new SipPhone.Phone({
    user: login.extension,
    domain: location.hostname,
    transport: scheme.toUpperCase(),
    io: {
      send: (text) => { if (socket.readyState === WebSocket.OPEN) socket.send(text); },
      setTimer: (fn, ms) => setTimeout(fn, ms),
      clearTimer: (timer) => clearTimeout(timer),
      emit: phoneEvent,
      media,
    },
  });
  phone.socket = socket;
  phone.ua = ua;
  socket.addEventListener("open", () => ua.register());
  socket.addEventListener("message", (event) => ua.receive(event.data));
  socket.addEventListener("close", () => {
    ua.closed();
    if (phone.socket === socket) phoneRetry();
  });
}

function phoneRetry() {
  phone.socket = null;
  if (phone.stopped || !apiKey()) return;
  phoneState("off");
  clearTimeout(phone.retry);
  phone.retry = setTimeout(phoneStart, phone.backoff);
  phone.backoff = Math.min(phone.backoff * 2, 30000);
}

function phoneStop() {
  phone.stopped = true;
  clearTimeout(phone.retry);
  const socket = phone.socket;
  phone.socket = null;
  if (phone.ua) phone.ua.unregister();
  if (socket) socket.close();
  if (phone.ua) phone.ua.closed(); // a call on it ends with the socket
  phoneState("disabled");
}

// The agent's choice, kept in this browser: with a desk phone, the page need not ring too.
function phoneEnabled() {
  return localStorage.getItem(PHONE_ON) !== "off";
}

function setPhoneEnabled(on) {
  localStorage.setItem(PHONE_ON, on ? "on" : "off");
  if (on) phoneStart();
  else phoneStop();
}

function phoneAnswer() {
  if (phone.ua) phone.ua.answer();
}

function phoneHangup() {
  if (phone.ua && phone.ua.call) phone.ua.hangup();
  else control("hangup");
}

function setMute(on) {
  phone.muted = on;
  media.mute(on);
  $("#phone").dataset.muted = String(on);
  $("#phone-mute").setAttribute("aria-pressed", String(on));
  $("#phone-mute").textContent = on ? "Unmute" : "Mute";
}

// -- the seat -----------------------------------------------------------------------------------

function showSeat(seat) {
  const state = seat.seated ? "yes" : seat.ringing ? "ringing" : "no";
  $("#seat").dataset.seated = state;
  $("#seat-take").hidden = state !== "no";
  $("#seat-leave").hidden = state !== "yes";
  $("#seat-state").textContent = seat.seated
    ? `On a seat (${seat.calls} ${seat.calls === 1 ? "call" : "calls"})`
    : seat.ringing ? "Taking the seat…" : "";
}

async function takeSeat() {
  phone.seatPending = true;
  const seat = await act("Seat", () => api("POST", `/agents/${me.extension}/seat`));
  if (seat) showSeat(seat);
  else phone.seatPending = false;
}

async function leaveSeat() {
  const seat = await act("Seat", () => api("DELETE", `/agents/${me.extension}/seat`));
  if (seat) showSeat(seat);
}

// The seat is the engine's once the phone answered; a moment later than our ACK, hence the
// few tries.
async function refreshSeat(tries) {
  const seat = await act("Seat", () => api("GET", `/agents/${me.extension}/seat`));
  if (!seat) return;
  if (!seat.seated && tries > 0 && phone.seatPending && phone.ua && phone.ua.call) {
    setTimeout(() => refreshSeat(tries - 1), 100);
    return;
  }
  if (seat.seated || !(phone.ua && phone.ua.call)) phone.seatPending = false;
  showSeat(seat);
}

// -- wiring -------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  buildKeypad();
  $("#login").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("#key").value.trim());
    $("#key").value = "";
    start();
  });
  $("#logout").addEventListener("click", () => logout());
  $("#go-available").addEventListener("click", () => setPresence("available"));
  $("#go-away").addEventListener("click", () => setPresence("away"));
  $("#end-wrap").addEventListener("click", () => setPresence("available"));
  $("#dnd").addEventListener("change", (event) => setDnd(event.target.checked));
  $("#hangup").addEventListener("click", () => control("hangup"));
  $("#hold").addEventListener("click", () => control("hold"));
  $("#resume").addEventListener("click", () => control("resume"));
  $("#transfer-form").addEventListener("submit", transfer);
  $("#transfer-complete").addEventListener("click", () => consultation("complete"));
  $("#transfer-cancel").addEventListener("click", () => consultation("cancel"));
  $("#disposition-form").addEventListener("submit", dispose);
  media.audio = $("#phone-audio");
  $("#phone-on").addEventListener("change", (event) => setPhoneEnabled(event.target.checked));
  $("#phone-answer").addEventListener("click", phoneAnswer);
  $("#phone-hangup").addEventListener("click", phoneHangup);
  $("#phone-mute").addEventListener("click", () => setMute(!phone.muted));
  $("#seat-take").addEventListener("click", takeSeat);
  $("#seat-leave").addEventListener("click", leaveSeat);
  $("#dial-form").addEventListener("submit", (event) => {
    event.preventDefault();
    callNumber(event.target.elements.number.value.trim());
  });
  start();
});
