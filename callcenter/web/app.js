// The live dashboard: one EventSource on /api/live (snapshot, then row deltas), REST for actions.
// Plain ES2020, no framework, no build step. Every value from the server goes in as text.
"use strict";

const KEY = "callcenter.key";
const SUPERVISOR = "callcenter.supervisor";
const board = {
  agents: new Map(), calls: new Map(), campaigns: new Map(), tasks: new Map(), trunks: new Map(),
  queues: new Map(),
};
let clockOffset = 0; // server seconds minus browser seconds
let source = null;
let retry = null;
let pending = false;

const $ = (selector) => document.querySelector(selector);

function serverNow() {
  return Date.now() / 1000 + clockOffset;
}

function apiKey() {
  return sessionStorage.getItem(KEY);
}

async function api(method, path, body, contentType = "application/json") {
  const headers = { Authorization: `Bearer ${apiKey()}` };
  let payload;
  if (body !== undefined) {
    headers["Content-Type"] = contentType;
    payload = contentType === "application/json" ? JSON.stringify(body) : body;
  }
  const response = await fetch(path, { method, headers, body: payload });
  const data = await response.json().catch(() => ({}));
  if (response.status === 401) {
    logout("The key was refused.");
  }
  if (!response.ok) {
    throw new Error((data.error && data.error.reason) || `${response.status}`);
  }
  return data;
}

// -- the stream ---------------------------------------------------------------------------------

async function connect() {
  clearTimeout(retry);
  if (source) source.close();
  setStatus("connecting");
  let token;
  try {
    token = (await api("POST", "/api/live/token")).token;
  } catch (error) {
    setStatus("offline");
    if (apiKey()) retry = setTimeout(connect, 3000);
    return;
  }
  source = new EventSource(`/api/live?token=${encodeURIComponent(token)}`);
  source.addEventListener("snapshot", (e) => {
    const snap = JSON.parse(e.data);
    clockOffset = snap.now - Date.now() / 1000;
    for (const [name, rows, id] of [
      ["agents", snap.agents, "extension"], ["calls", snap.calls, "call_id"],
      ["campaigns", snap.campaigns, "id"], ["tasks", snap.tasks, "id"],
      ["trunks", snap.trunks || [], "name"],
      ["queues", snap.queues || [], "name"],
    ]) {
      board[name] = new Map(rows.map((row) => [row[id], row]));
    }
    setStatus("live");
    render();
  });
  const upsert = (name, id) => (e) => {
    const row = JSON.parse(e.data);
    board[name].set(row[id], row);
    render();
  };
  const remove = (name, id) => (e) => {
    board[name].delete(JSON.parse(e.data)[id]);
    render();
  };
  source.addEventListener("agent", upsert("agents", "extension"));
  source.addEventListener("call", upsert("calls", "call_id"));
  source.addEventListener("call-gone", remove("calls", "call_id"));
  source.addEventListener("campaign", upsert("campaigns", "id"));
  source.addEventListener("campaign-gone", remove("campaigns", "id"));
  source.addEventListener("task", upsert("tasks", "id"));
  source.addEventListener("task-gone", remove("tasks", "id"));
  source.addEventListener("trunk", upsert("trunks", "name"));
  source.addEventListener("queue", upsert("queues", "name"));
  source.onerror = () => {
    // The browser retries by itself with the same URL; once the token has expired the server
    // refuses it and the source closes: then fetch a new token.
    if (source.readyState === EventSource.CLOSED) {
      setStatus("offline");
      retry = setTimeout(connect, 1000);
    } else {
      setStatus("reconnecting");
    }
  };
}

function setStatus(text) {
  const status = $("#status");
  status.textContent = text;
  status.dataset.status = text;
}

// -- rendering ----------------------------------------------------------------------------------

function render() {
  // Deltas come in bursts (a call's answer changes two agents and the call): draw once a frame.
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => {
    pending = false;
    renderAgents();
    renderCalls();
    renderQueues();
    renderCampaigns();
    renderTasks();
    renderTrunks();
  });
}

function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.append(td);
  return td;
}

function badge(row, state) {
  const td = cell(row, "");
  const span = document.createElement("span");
  span.className = `state state-${state}`;
  span.textContent = state.replace("-", " ");
  td.append(span);
  return td;
}

function fill(table, rows, build) {
  const body = $(`${table} tbody`);
  body.replaceChildren(...rows.map(build));
}

function renderAgents() {
  const agents = [...board.agents.values()].filter((a) => a.role !== "supervisor");
  let calls = 0;
  let talk = 0;
  fill("#agents", agents, (a) => {
    calls += a.calls_today;
    talk += a.talk_today;
    const tr = document.createElement("tr");
    tr.dataset.ext = a.extension;
    tr.dataset.state = a.state;
    cell(tr, a.extension);
    cell(tr, a.name);
    badge(tr, a.state);
    cell(tr, duration(serverNow() - a.since), "num since").dataset.since = a.since;
    cell(tr, a.calls_today, "num");
    cell(tr, duration(a.talk_today), "num");
    const p = a.plan;
    if (a.daily_plan) {
      cell(tr, `${p.day_plan} / ${p.day_fact} / ${p.day_percent}%`, "num");
      cell(tr, `${p.month_plan} / ${p.month_fact} / ${p.month_percent}% / ${p.days_left} d`, "num");
      const pace = cell(tr, `${p.pace}%`, "num");
      if (p.pace < 100) pace.title = `needs ${p.needed_per_day} a day`;
    } else {
      cell(tr, "—");
      cell(tr, "—");
      cell(tr, "");
    }
    return tr;
  });
  $("#totals").textContent = `Today: ${calls} calls, talk ${duration(talk)}`;
}

function renderCalls() {
  const calls = [...board.calls.values()].sort((a, b) => a.started_at - b.started_at);
  $("#no-calls").hidden = calls.length > 0;
  fill("#calls", calls, (c) => {
    const tr = document.createElement("tr");
    tr.dataset.callId = c.call_id;
    tr.dataset.state = c.state;
    cell(tr, c.caller);
    cell(tr, c.callee);
    cell(tr, c.direction);
    badge(tr, c.state === "ringing" && c.ringing.length ? "ringing" : c.state);
    const start = c.answered_at || c.started_at;
    cell(tr, duration(serverNow() - start), "num since").dataset.since = start;
    const td = cell(tr, "");
    if (c.state === "talking") {
      for (const mode of ["listen", "whisper", "barge"]) {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = mode;
        button.dataset.mode = mode;
        button.addEventListener("click", () => monitor(c.call_id, mode));
        td.append(button);
      }
    }
    return tr;
  });
}

function renderQueues() {
  const queues = [...board.queues.values()].sort((a, b) => a.name.localeCompare(b.name));
  $("#no-queues").hidden = queues.length > 0;
  const share = (r) => (r === null || r === undefined ? "–" : `${(100 * r).toFixed(0)}%`);
  fill("#queues", queues, (q) => {
    const tr = document.createElement("tr");
    tr.dataset.queue = q.name;
    cell(tr, q.name);
    cell(tr, q.waiting, "num");
    cell(tr, `${q.longest_wait} s`, "num");
    cell(tr, q.members_logged_in, "num");
    cell(tr, q.answered, "num");
    cell(tr, `${share(q.service_level)} in ${q.service_level_seconds} s`, "num");
    const asa = q.average_speed_of_answer;
    cell(tr, asa === null || asa === undefined ? "–" : `${asa.toFixed(1)} s`, "num");
    cell(tr, share(q.abandon_rate), "num");
    return tr;
  });
}

function renderCampaigns() {
  const campaigns = [...board.campaigns.values()].sort((a, b) => a.id - b.id);
  fill("#campaigns", campaigns, (c) => {
    const tr = document.createElement("tr");
    tr.dataset.campaign = c.id;
    cell(tr, c.name);
    cell(tr, c.state);
    const progress = cell(tr, ` ${c.done} / ${c.total}`);
    const bar = document.createElement("span");
    bar.className = "bar";
    const inner = document.createElement("span");
    inner.style.width = `${c.total ? (100 * c.done) / c.total : 0}%`;
    bar.append(inner);
    progress.prepend(bar);
    cell(tr, c.dialled, "num");
    cell(tr, c.connected, "num");
    const rate = cell(tr, `${(100 * c.abandon_rate).toFixed(1)}% / ${(100 * c.abandon_cap).toFixed(1)}%`, "num");
    if (c.abandon_rate > c.abandon_cap) rate.classList.add("over");
    const share = (r) => (r === null || r === undefined ? "–" : `${(100 * r).toFixed(1)}%`);
    const amd = cell(
      tr,
      `${c.amd_machines ?? 0} · ${share(c.amd_false_person_rate)} / ${share(c.amd_false_machine_rate)}`,
      "num",
    );
    amd.title = `${c.amd_judged ?? 0} answers with a verdict disposed by agents`;
    const actions = cell(tr, "");
    const verbs = { draft: ["start"], running: ["pause", "stop"], paused: ["resume", "stop"] }[c.state] || [];
    for (const verb of verbs) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = verb;
      button.addEventListener("click", () => campaignCommand(c.id, verb));
      actions.append(button);
    }
    const upload = document.createElement("input");
    upload.type = "file";
    upload.accept = ".csv,text/csv";
    upload.title = "Upload leads (CSV)";
    upload.addEventListener("change", () => upload.files[0] && uploadLeads(c.id, upload.files[0]));
    actions.append(upload);
    return tr;
  });
}

function trunkState(t) {
  // down by qualify beats the registration; an unregistered static trunk is just "up".
  if (t.qualify && t.qualify.status === "down") return "down";
  if (t.registration) return t.registration.state;
  return t.available ? "up" : "full";
}

function renderTrunks() {
  const trunks = [...board.trunks.values()].sort((a, b) => a.order - b.order);
  $("#trunks-section").hidden = trunks.length === 0;
  fill("#trunks", trunks, (t) => {
    const tr = document.createElement("tr");
    tr.dataset.trunk = t.name;
    cell(tr, t.name);
    badge(tr, trunkState(t));
    const reg = t.registration;
    let detail = "";
    if (reg && reg.state === "failing") {
      detail = `${reg.last_status ?? ""} ${reg.last_reason ?? ""}, next try in ${Math.round(reg.next_try_in ?? 0)} s`;
    } else if (reg && reg.expires_in !== null) {
      detail = `expires in ${Math.round(reg.expires_in)} s`;
    }
    cell(tr, detail.trim() || "—");
    cell(tr, t.qualify ? `${t.qualify.status}${t.qualify.rtt_ms !== null ? ` (${t.qualify.rtt_ms} ms)` : ""}` : "—");
    cell(tr, t.channels ? `${t.channels_in_use} / ${t.channels}` : `${t.channels_in_use}`, "num");
    return tr;
  });
}

function renderTasks() {
  const tasks = [...board.tasks.values()].sort((a, b) => a.created_at - b.created_at);
  $("#no-tasks").hidden = tasks.length > 0;
  fill("#tasks", tasks, (t) => {
    const tr = document.createElement("tr");
    tr.dataset.task = t.id;
    cell(tr, t.phone);
    cell(tr, t.assignee || "—");
    cell(tr, t.missed_calls, "num");
    cell(tr, duration(serverNow() - t.created_at), "num since").dataset.since = t.created_at;
    cell(tr, t.text);
    return tr;
  });
}

function tick() {
  // Times in state, call durations and task ages move every second without any event.
  for (const td of document.querySelectorAll("td.since")) {
    td.textContent = duration(serverNow() - Number(td.dataset.since));
  }
}

// -- actions ------------------------------------------------------------------------------------

function message(text) {
  $("#campaign-message").textContent = text;
}

async function monitor(callId, mode) {
  const supervisor = $("#supervisor").value.trim();
  if (!supervisor) {
    alert("Enter your extension first: the engine rings your phone to join the call.");
    return;
  }
  try {
    await api("POST", `/calls/${encodeURIComponent(callId)}/monitor`, { supervisor, mode });
  } catch (error) {
    alert(`Cannot ${mode}: ${error.message}`);
  }
}

async function campaignCommand(id, verb) {
  try {
    await api("POST", `/campaigns/${id}/${verb}`);
    message("");
  } catch (error) {
    message(`Cannot ${verb}: ${error.message}`);
  }
}

async function uploadLeads(id, file) {
  try {
    const result = await api("POST", `/campaigns/${id}/leads`, await file.text(), "text/csv");
    const errors = result.errors.map((e) => `line ${e.line}: ${e.reason}`).join("; ");
    message(`Imported ${result.imported}, merged ${result.merged}, DNC ${result.dnc}${errors ? `; ${errors}` : ""}`);
  } catch (error) {
    message(`Upload failed: ${error.message}`);
  }
}

async function createCampaign(event) {
  event.preventDefault();
  const form = event.target;
  const f = form.elements;
  const settings = {
    name: f.name.value.trim(),
    mode: f.mode.value,
    ratio: Number(f.ratio.value) || 1,
    agents: f.agents.value.split(/[\s,]+/).filter(Boolean),
    amd: f.amd.value !== "off",
    amd_unsure: f.amd.value === "off" ? "connect" : f.amd.value,
    amd_max_seconds: Number(f.amd_max_seconds.value) || 6,
    amd_initial_silence_seconds: Number(f.amd_initial_silence_seconds.value) || 3,
  };
  if (f.caller_id.value.trim()) settings.caller_id = f.caller_id.value.trim();
  try {
    const created = await api("POST", "/campaigns", settings);
    if (f.csv.files[0]) await uploadLeads(created.id, f.csv.files[0]);
    else message(`Created ${created.name}`);
    form.reset();
  } catch (error) {
    message(`Cannot create: ${error.message}`);
  }
}

// -- key ----------------------------------------------------------------------------------------

function logout(reason) {
  sessionStorage.removeItem(KEY);
  clearTimeout(orphansTimer);
  if (source) source.close();
  clearTimeout(retry);
  $("#board").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = reason || "";
  setStatus("offline");
}

let orphansTimer;

async function refreshOrphans() {
  // The rule "no open contact without a task": contacts waiting for us with no open task.
  clearTimeout(orphansTimer);
  if (!apiKey()) return;
  try {
    const page = await api("GET", "/contacts/without-task?limit=100");
    $("#no-orphans").hidden = page.contacts.length > 0;
    $("#no-orphans").textContent = "Every customer waiting for us has an open task.";
    fill("#orphans", page.contacts, (c) => {
      const tr = document.createElement("tr");
      tr.dataset.contact = c.phone;
      cell(tr, c.phone);
      cell(tr, c.responsible || "—");
      cell(tr, new Date(c.created_at).toLocaleString());
      return tr;
    });
  } catch (error) {
    $("#no-orphans").hidden = false;
    $("#no-orphans").textContent = `Not available: ${error.message}`;
  }
  orphansTimer = setTimeout(refreshOrphans, 5000);
}

// -- the day report -----------------------------------------------------------------------------

function reportDate() {
  const input = $("#report-form").elements.date;
  if (!input.value) {
    const now = new Date();  // today where the supervisor is, not in UTC
    input.value = new Date(now.getTime() - now.getTimezoneOffset() * 60000)
      .toISOString().slice(0, 10);
  }
  return input.value;
}

function reportQuery() {
  // The day as a calendar day in the supervisor's own time zone.
  const tz = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  return `date=${encodeURIComponent(reportDate())}&tz=${encodeURIComponent(tz)}`;
}

async function showReport(event) {
  if (event) event.preventDefault();
  try {
    const report = await api("GET", `/reports/agents?${reportQuery()}`);
    fill("#report", report.agents, (a) => {
      const tr = document.createElement("tr");
      tr.dataset.agent = a.agent;
      tr.className = "clickable";
      tr.title = "the agent's calls, with their recordings";
      tr.addEventListener("click", () => showAgentCalls(a.agent));
      cell(tr, a.agent);
      for (const n of [a.calls, a.answered, a.inbound, a.outbound]) cell(tr, String(n), "num");
      for (const s of [a.talk_seconds, a.average_talk_seconds, a.average_wrap_seconds,
                       a.average_handle_seconds]) cell(tr, duration(s), "num");
      cell(tr, Object.entries(a.dispositions).map(([d, n]) => `${d} ${n}`).join(", "));
      return tr;
    });
    $("#report-message").textContent = report.agents.length ? "" : `No calls on ${day}.`;
  } catch (error) {
    $("#report-message").textContent = `Not available: ${error.message}`;
  }
}

async function showAgentCalls(agent) {
  const day = reportDate();
  const page = await api("GET",
    `/calls?agent=${encodeURIComponent(agent)}&date=${encodeURIComponent(day)}&limit=200`);
  $("#agent-calls").hidden = false;
  $("#agent-calls-who").textContent = `${agent} on ${day}`;
  fill("#agent-calls", page.calls, (c) => {
    const tr = document.createElement("tr");
    tr.dataset.call = c.id;
    cell(tr, new Date(c.started_at).toLocaleTimeString());
    cell(tr, c.direction);
    cell(tr, c.contact_phone || (c.direction === "inbound" ? c.from_number : c.to_number));
    cell(tr, c.outcome || "in progress");
    cell(tr, c.talk_seconds != null ? duration(c.talk_seconds) : "", "num");
    cell(tr, [c.disposition, c.disposition_note].filter(Boolean).join(": "));
    const td = document.createElement("td");
    if (c.recording_path) {
      const play = document.createElement("button");
      play.type = "button";
      play.className = "play";
      play.textContent = "play";
      play.addEventListener("click", () => playCall(c.id));
      td.append(play);
    }
    tr.append(td);
    return tr;
  });
}

let playerUrl = null;

async function playCall(id) {
  // The recording needs the key: fetch it, then play the bytes; the timeline beside it.
  const [response, timeline] = await Promise.all([
    fetch(`/calls/${id}/recording`, { headers: { Authorization: `Bearer ${apiKey()}` } }),
    api("GET", `/calls/${id}/timeline`),
  ]);
  if (!response.ok) {
    $("#player-figures").textContent = `Recording not available: ${response.status}`;
    return;
  }
  if (playerUrl) URL.revokeObjectURL(playerUrl);
  playerUrl = URL.createObjectURL(await response.blob());
  const audio = $("#player-audio");
  audio.src = playerUrl;
  $("#player").hidden = false;
  $("#player").dataset.call = id;
  $("#player-call").textContent = `#${id}`;
  const total = timeline.duration_seconds || 1;
  for (const lane of document.querySelectorAll("#timeline .lane")) {
    lane.replaceChildren(...timeline.segments.filter((s) => s.who === lane.dataset.who).map((s) => {
      const bar = document.createElement("div");
      bar.className = "segment";
      bar.style.left = `${(s.start / total) * 100}%`;
      bar.style.width = `${((s.end - s.start) / total) * 100}%`;
      bar.title = `${s.who} ${s.start.toFixed(1)}-${s.end.toFixed(1)} s`;
      return bar;
    }));
  }
  const a = timeline.analytics;
  $("#player-figures").textContent = a
    ? `customer ${duration(a.customer_talk_seconds)}, agent ${duration(a.agent_talk_seconds)}, `
      + `silence ${duration(a.silence_seconds)}, overtalk ${duration(a.overtalk_seconds)}`
    : "";
  $("#timeline").dataset.duration = total;
}

function followPlayer() {
  const audio = $("#player-audio");
  const total = Number($("#timeline").dataset.duration || 1);
  $("#timeline .cursor").style.left = `${Math.min(100, (audio.currentTime / total) * 100)}%`;
}

function seek(event) {
  const box = event.currentTarget.getBoundingClientRect();
  const total = Number($("#timeline").dataset.duration || 0);
  $("#player-audio").currentTime = ((event.clientX - box.left) / box.width) * total;
}

async function downloadReport() {
  // A link cannot carry the key: fetch with it, hand the browser the file.
  const day = reportDate();
  const response = await fetch(`/reports/agents.csv?${reportQuery()}`,
                               { headers: { Authorization: `Bearer ${apiKey()}` } });
  if (!response.ok) {
    $("#report-message").textContent = `CSV not available: ${response.status}`;
    return;
  }
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = `agents-${day}.csv`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function showBoard() {
  $("#login").hidden = true;
  $("#board").hidden = false;
  connect();
  refreshOrphans();
  showReport();
}

function start() {
  // Kiosk screens open /?key=...: keep it for this tab and take it out of the address bar.
  const params = new URLSearchParams(location.search);
  if (params.get("key")) {
    sessionStorage.setItem(KEY, params.get("key"));
    params.delete("key");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? `?${rest}` : ""));
  }
  const supervisor = $("#supervisor");
  supervisor.value = localStorage.getItem(SUPERVISOR) || "";
  supervisor.addEventListener("change", () => localStorage.setItem(SUPERVISOR, supervisor.value.trim()));
  $("#login").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("#key").value.trim());
    $("#key").value = "";
    showBoard();
  });
  $("#logout").addEventListener("click", () => logout());
  $("#campaign-form").addEventListener("submit", createCampaign);
  $("#report-form").addEventListener("submit", showReport);
  $("#report-csv").addEventListener("click", downloadReport);
  $("#player-audio").addEventListener("timeupdate", followPlayer);
  $("#timeline").addEventListener("click", seek);
  setInterval(tick, 1000);
  if (apiKey()) showBoard();
  else logout();
}

start();
