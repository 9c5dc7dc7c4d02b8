// The agent page's browser phone: a small SIP user agent over WebSocket (RFC 7118), our own
// rather than JsSIP's 500 kB bundle, because the page needs only a fraction of SIP: REGISTER
// (refreshed), and as the called side INVITE -> 180 -> 200 (the RTCPeerConnection's answer),
// ACK, BYE both ways, CANCEL (487), OPTIONS, re-INVITE (hold, session refresh), 486 while busy,
// 481 for dialogs it does not know. It never places calls: the page's click-to-call goes over
// REST, which rings this phone first.
//
// No I/O here (sans-IO): parse() and build*() are pure functions; a Phone is fed the frames that
// arrive (receive) and the user's acts (answer, hangup), and acts through the functions it is
// given: send(text), setTimer/clearTimer, media (the page's RTCPeerConnection glue) and emit
// (what the page shows). agent.js opens the socket and does the media; the tests drive the same
// object with fakes (tests/callcenter/phone.test.cjs, under node). Plain ES2020, no build step.
"use strict";

(function (root) {
  const COMPACT = {
    a: "accept-contact", b: "referred-by", c: "content-type", d: "request-disposition",
    e: "content-encoding", f: "from", i: "call-id", j: "reject-contact", k: "supported",
    l: "content-length", m: "contact", o: "event", r: "refer-to", s: "subject", t: "to",
    u: "allow-events", v: "via", x: "session-expires", y: "identity",
  };
  // Headers whose values may come as a comma-separated list on one line (RFC 3261 7.3.1);
  // the others (From, To, Call-Info's URI with commas, WWW-Authenticate) are kept whole.
  const LISTS = new Set(["via", "route", "record-route", "contact", "allow", "supported",
    "require", "call-info", "accept", "alert-info"]);
  const ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO";
  const T1 = 500;
  const T2 = 4000;
  const TRANSACTION_MS = 64 * T1;
  const encoder = new TextEncoder();
  const decoder = new TextDecoder("utf-8", { fatal: true });

  class SipParseError extends Error {}

  // Splits on commas outside quotes and <...>.
  function splitList(value) {
    const parts = [];
    let depth = 0;
    let quoted = false;
    let start = 0;
    for (let i = 0; i < value.length; i++) {
      const ch = value[i];
      if (quoted) {
        if (ch === "\\") i++;
        else if (ch === '"') quoted = false;
      } else if (ch === '"') quoted = true;
      else if (ch === "<") depth++;
      else if (ch === ">") depth = Math.max(0, depth - 1);
      else if (ch === "," && depth === 0) {
        parts.push(value.slice(start, i).trim());
        start = i + 1;
      }
    }
    parts.push(value.slice(start).trim());
    return parts.filter((part) => part !== "");
  }

  function indexOfBlankLine(bytes) {
    for (let i = 0; i + 3 < bytes.length; i++) {
      if (bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10) {
        return i;
      }
    }
    return -1;
  }

  // One SIP message (a WebSocket frame: a string, or bytes for a binary frame) ->
  // {request, method, uri, status, reason, headers: [[name, value]...] (names lower-case,
  // compact forms expanded, lists split), body (string)}. Throws SipParseError.
  function parse(frame) {
    const bytes = typeof frame === "string" ? encoder.encode(frame) : new Uint8Array(frame);
    const end = indexOfBlankLine(bytes);
    if (end < 0) throw new SipParseError("no blank line after the headers");
    let head;
    try {
      head = decoder.decode(bytes.subarray(0, end));
    } catch (error) {
      throw new SipParseError("the headers are not UTF-8");
    }
    const lines = [];
    for (const line of head.split("\r\n")) {
      if (/^[ \t]/.test(line) && lines.length > 1) lines[lines.length - 1] += " " + line.trim();
      else lines.push(line);
    }
    const message = { headers: [] };
    const first = lines[0];
    let match = /^SIP\/2\.0 ([1-6]\d\d) ?(.*)$/.exec(first);
    if (match) {
      Object.assign(message, { request: false, status: Number(match[1]), reason: match[2] });
    } else {
      match = /^([A-Za-z0-9.!%*_+`'~-]+) (\S+) SIP\/2\.0$/.exec(first);
      if (!match) throw new SipParseError(`bad start line: ${first.slice(0, 80)}`);
      Object.assign(message, { request: true, method: match[1], uri: match[2] });
    }
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":");
      if (colon <= 0) throw new SipParseError(`bad header line: ${line.slice(0, 80)}`);
      const raw = line.slice(0, colon).trim().toLowerCase();
      if (!/^[a-z0-9.!%*_+`'~-]+$/.test(raw)) throw new SipParseError(`bad header name: ${raw}`);
      const name = COMPACT[raw] || raw;
      const value = line.slice(colon + 1).trim();
      for (const part of LISTS.has(name) ? splitList(value) : [value]) {
        message.headers.push([name, part]);
      }
    }
    for (const name of ["via", "from", "to", "call-id", "cseq"]) {
      if (header(message, name) === null) throw new SipParseError(`no ${name} header`);
    }
    const cseq = /^(\d{1,10})\s+(\S+)$/.exec(header(message, "cseq"));
    if (!cseq) throw new SipParseError("bad CSeq");
    message.cseq = Number(cseq[1]);
    message.cseqMethod = cseq[2];
    if (message.request && message.cseqMethod !== message.method) {
      throw new SipParseError("the CSeq method is not the request's");
    }
    const rest = bytes.subarray(end + 4);
    const length = header(message, "content-length");
    let body = rest;
    if (length !== null) {
      if (!/^\d+$/.test(length)) throw new SipParseError("bad Content-Length");
      if (Number(length) > rest.length) throw new SipParseError("the body is shorter than its Content-Length");
      body = rest.subarray(0, Number(length));
    }
    try {
      message.body = decoder.decode(body);
    } catch (error) {
      throw new SipParseError("the body is not UTF-8");
    }
    return message;
  }

  function headers(message, name) {
    const wanted = name.toLowerCase();
    return message.headers.filter(([n]) => n === wanted).map(([, value]) => value);
  }

  function header(message, name) {
    const found = headers(message, name);
    return found.length ? found[0] : null;
  }

  // A header value's parameter (";tag=..."), after the <URI> if there is one; null if absent,
  // "" for a flag.
  function param(value, name) {
    if (value == null) return null;
    const close = value.lastIndexOf(">");
    const params = (close >= 0 ? value.slice(close + 1) : value).split(";").slice(1);
    for (const item of params) {
      const eq = item.indexOf("=");
      const key = (eq < 0 ? item : item.slice(0, eq)).trim().toLowerCase();
      if (key === name.toLowerCase()) {
        return eq < 0 ? "" : item.slice(eq + 1).trim().replace(/^"(.*)"$/, "$1");
      }
    }
    return null;
  }

  // The URI of a name-addr (`"Ann" <sip:101@x>;tag=1`) or of a bare addr-spec.
  function uriOf(value) {
    if (value == null) return null;
    const open = value.indexOf("<");
    if (open >= 0) return value.slice(open + 1, value.indexOf(">", open));
    return value.split(";")[0].trim();
  }

  // Who a From header names: its display name, else its user part.
  function partyOf(value) {
    const display = /^\s*(?:"((?:[^"\\]|\\.)*)"|([^<"]*?))\s*</.exec(value || "");
    const name = display ? (display[1] != null ? display[1].replace(/\\(.)/g, "$1") : display[2]) : "";
    const uri = uriOf(value) || "";
    const user = /^sips?:([^@;]+)@/.exec(uri);
    return { name: name || null, user: user ? decodeURIComponent(user[1]) : uri };
  }

  function byteLength(text) {
    return encoder.encode(text).length;
  }

  function serialize(startLine, lines, body) {
    const text = body || "";
    const all = lines.filter(([, value]) => value != null).map(([name, value]) => `${name}: ${value}`);
    all.push(`Content-Length: ${byteLength(text)}`);
    return `${startLine}\r\n${all.join("\r\n")}\r\n\r\n${text}`;
  }

  // A request: headers as [[name, value]...] in order; Content-Length is computed (bytes).
  function buildRequest(method, uri, lines, body) {
    return serialize(`${method} ${uri} SIP/2.0`, lines, body);
  }

  // A response to `request`: its Via (all, in order), From, To (with `toTag` added if it has
  // none), Call-ID and CSeq; its Record-Route on a response that makes a dialog (RFC 3261
  // 12.1.1); then `lines`.
  function buildResponse(request, status, reason, { toTag, lines = [], body } = {}) {
    const out = headers(request, "via").map((via) => ["Via", via]);
    out.push(["From", header(request, "from")]);
    let to = header(request, "to");
    if (toTag && param(to, "tag") === null) to = `${to};tag=${toTag}`;
    out.push(["To", to]);
    out.push(["Call-ID", header(request, "call-id")]);
    out.push(["CSeq", header(request, "cseq")]);
    if (request.method === "INVITE" && status > 100 && status < 300) {
      for (const route of headers(request, "record-route")) out.push(["Record-Route", route]);
    }
    return serialize(`SIP/2.0 ${status} ${reason}`, out.concat(lines), body);
  }

  // Call-Info with answer-after=0 (what the engine puts on seat calls and dialer calls): the
  // only INVITEs the phone answers by itself.
  function asksAutoAnswer(invite) {
    return headers(invite, "call-info").some((value) => param(value, "answer-after") === "0");
  }

  function token(bytes = 8) {
    const buffer = new Uint8Array(bytes);
    root.crypto.getRandomValues(buffer);
    return Array.from(buffer, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // One SIP phone on one WebSocket. `io`: send(text), setTimer(fn, ms) -> handle,
  // clearTimer(handle), emit(kind, detail), media {answer(offerSdp) -> Promise<answerSdp>,
  // update(offerSdp) -> Promise<answerSdp>, offer() -> current local SDP, close()}.
  // Events: registered {expires}, unregistered {reason}, incoming {caller, autoAnswer},
  // answered, confirmed, ended {by, reason}, error {reason}.
  class Phone {
    constructor({ user, domain, transport = "WS", expires = 600, io }) {
      this.user = user;
      this.domain = domain;
      this.transport = transport;
      this.expires = expires;
      this.io = io;
      this.host = `${token(6)}.invalid`;
      this.contact = `<sip:${user}@${this.host};transport=${transport.toLowerCase()}>`;
      this.registration = { callId: token(12), cseq: 0, branch: null, timer: null, state: "off" };
      this.call = null; // the one call: {callId, invite, localTag, remoteTag, state, ...}
      this.ended = new Map(); // Call-ID -> last final response, to answer retransmissions
    }

    // -- REGISTER --------------------------------------------------------------------------

    register(expires = this.expires) {
      const reg = this.registration;
      this.io.clearTimer(reg.timer);
      reg.branch = `z9hG4bK${token()}`;
      reg.cseq += 1;
      reg.asked = expires;
      reg.state = expires ? "registering" : "unregistering";
      const aor = `sip:${this.user}@${this.domain}`;
      this.io.send(buildRequest("REGISTER", `sip:${this.domain}`, [
        ["Via", `SIP/2.0/${this.transport} ${this.host};branch=${reg.branch}`],
        ["Max-Forwards", "70"],
        ["From", `<${aor}>;tag=${reg.tag || (reg.tag = token(5))}`],
        ["To", `<${aor}>`],
        ["Call-ID", reg.callId],
        ["CSeq", `${reg.cseq} REGISTER`],
        ["Contact", this.contact],
        ["Expires", String(expires)],
        ["Allow", ALLOW],
        ["User-Agent", "callcenter-agent-page"],
      ]));
      reg.timer = this.io.setTimer(() => this._registerFailed("no answer to REGISTER"), TRANSACTION_MS);
    }

    unregister() {
      if (this.registration.state === "registered") this.register(0);
    }

    get registered() {
      return this.registration.state === "registered";
    }

    _registerFailed(reason) {
      const reg = this.registration;
      this.io.clearTimer(reg.timer);
      reg.state = "off";
      reg.branch = null;
      this.io.emit("unregistered", { reason });
    }

    _onRegisterResponse(response) {
      const reg = this.registration;
      if (response.status < 200) return;
      this.io.clearTimer(reg.timer);
      reg.branch = null;
      if (response.status >= 300) {
        this._registerFailed(`REGISTER: ${response.status} ${response.reason}`);
        return;
      }
      if (reg.asked === 0) {
        reg.state = "off";
        this.io.emit("unregistered", { reason: "unregistered" });
        return;
      }
      // The binding's time: ours in the Contact echoed back, else Expires.
      const mine = headers(response, "contact").find((c) => uriOf(c) === uriOf(this.contact));
      let granted = Number(param(mine, "expires") ?? header(response, "expires") ?? reg.asked);
      if (!Number.isFinite(granted) || granted <= 0) granted = reg.asked;
      reg.state = "registered";
      // Refresh with a margin: at half the time for short bindings, 30 s early for long ones.
      const refresh = Math.max(1, granted > 120 ? granted - 30 : granted / 2);
      reg.timer = this.io.setTimer(() => this.register(), refresh * 1000);
      this.io.emit("registered", { expires: granted });
    }

    // -- what arrives ----------------------------------------------------------------------

    // One frame from the socket. A message that does not parse is answered 400 when it is a
    // request we can still address, and is otherwise dropped; either way an "error" is emitted.
    receive(frame) {
      let message;
      try {
        message = parse(frame);
      } catch (error) {
        this.io.emit("error", { reason: `bad SIP message: ${error.message}` });
        return;
      }
      if (!message.request) {
        this._onResponse(message);
        return;
      }
      try {
        this._onRequest(message);
      } catch (error) {
        this.io.emit("error", { reason: `${message.method}: ${error.message}` });
        if (message.method !== "ACK") this._respond(message, 500, "Server Internal Error");
      }
    }

    _onResponse(response) {
      const via = header(response, "via");
      const branch = param(via, "branch");
      if (response.cseqMethod === "REGISTER" && branch === this.registration.branch) {
        this._onRegisterResponse(response);
      }
      // Responses to our BYE need nothing: the call ended when we sent it.
    }

    _failed(error) {
      this.io.emit("error", { reason: error.message });
    }

    _respond(request, status, reason, options = {}) {
      const text = buildResponse(request, status, reason, options);
      this.io.send(text);
      return text;
    }

    _onRequest(request) {
      const callId = header(request, "call-id");
      const toTag = param(header(request, "to"), "tag");
      const call = this.call && this.call.callId === callId ? this.call : null;
      switch (request.method) {
        case "OPTIONS":
          this._respond(request, 200, "OK", {
            lines: [["Allow", ALLOW], ["Accept", "application/sdp"]],
          });
          return;
        case "INVITE":
          if (toTag !== null) this._reInvite(request, call).catch((error) => this._failed(error));
          else this._invite(request, call);
          return;
        case "ACK":
          this._ack(request, call);
          return;
        case "CANCEL":
          this._cancel(request, call);
          return;
        case "BYE":
          if (!this._inDialog(call, request)) {
            this._respond(request, 481, "Call/Transaction Does Not Exist");
            return;
          }
          this._respond(request, 200, "OK");
          this._end("remote", "bye");
          return;
        case "INFO":
          if (!this._inDialog(call, request)) this._respond(request, 481, "Call/Transaction Does Not Exist");
          else this._respond(request, 200, "OK");
          return;
        default:
          if (toTag !== null && !this._inDialog(call, request)) {
            this._respond(request, 481, "Call/Transaction Does Not Exist");
          } else {
            this._respond(request, 405, "Method Not Allowed", { lines: [["Allow", ALLOW]] });
          }
      }
    }

    _inDialog(call, request) {
      if (!call || call.state === "ended") return false;
      const from = param(header(request, "from"), "tag");
      const to = param(header(request, "to"), "tag");
      return from === call.remoteTag && to === call.localTag;
    }

    _invite(invite, call) {
      const callId = header(invite, "call-id");
      const branch = param(header(invite, "via"), "branch");
      if (call && call.branch === branch) {
        // A retransmission: the last response again.
        if (call.lastResponse) this.io.send(call.lastResponse);
        return;
      }
      if (this.ended.has(callId)) {
        this.io.send(this.ended.get(callId));
        return;
      }
      const localTag = token(5);
      if (this.call) {
        this._final(invite, 486, "Busy Here", localTag);
        return;
      }
      if (!/application\/sdp/i.test(header(invite, "content-type") || "") || !invite.body) {
        // The engine always offers; an INVITE without an offer would need our offer in the
        // 200 and its answer in the ACK, which this phone does not do.
        this._final(invite, 488, "Not Acceptable Here", localTag,
          [["Warning", '399 - "an INVITE with an SDP offer, please"']]);
        return;
      }
      const from = header(invite, "from");
      this.call = {
        callId, branch, invite, localTag,
        remoteTag: param(from, "tag"),
        remoteSeq: invite.cseq,
        localSeq: Math.floor(Math.random() * 10000) + 1,
        remoteTarget: uriOf(header(invite, "contact")) || uriOf(from),
        routes: headers(invite, "record-route"),
        state: "ringing",
        caller: partyOf(from),
        autoAnswer: asksAutoAnswer(invite),
        lastResponse: null,
        retransmit: null,
      };
      this.call.lastResponse = this._respond(invite, 180, "Ringing", {
        toTag: localTag, lines: [["Contact", this.contact]],
      });
      this.io.emit("incoming", { caller: this.call.caller, autoAnswer: this.call.autoAnswer });
      if (this.call && this.call.autoAnswer) this.answer().catch((error) => this._failed(error));
    }

    _final(invite, status, reason, localTag, lines = []) {
      const text = this._respond(invite, status, reason, { toTag: localTag, lines });
      this._remember(header(invite, "call-id"), text);
      return text;
    }

    _remember(callId, text) {
      this.ended.set(callId, text);
      if (this.ended.size > 32) this.ended.delete(this.ended.keys().next().value);
    }

    // Answers the ringing call: the media glue makes the answer SDP (ICE gathered in full),
    // then 200 goes out, repeated until the ACK (RFC 3261 13.3.1.4).
    async answer() {
      const call = this.call;
      if (!call || call.state !== "ringing") return;
      call.state = "answering";
      let sdp;
      try {
        sdp = await this.io.media.answer(call.invite.body);
      } catch (error) {
        if (this.call !== call || call.state !== "answering") return; // cancelled meanwhile
        this.io.emit("error", { reason: `no answer SDP: ${error.message}` });
        this._final(call.invite, 488, "Not Acceptable Here", call.localTag);
        this._end("local", "media");
        return;
      }
      if (this.call !== call || call.state !== "answering") return; // cancelled meanwhile
      call.state = "answered";
      call.localSdp = sdp;
      const ok = this._respond(call.invite, 200, "OK", {
        toTag: call.localTag,
        lines: [["Contact", this.contact], ["Allow", ALLOW], ["Content-Type", "application/sdp"]],
        body: sdp,
      });
      call.lastResponse = ok;
      this._retransmit(call, ok, T1, 0);
      this.io.emit("answered", {});
    }

    _retransmit(call, text, interval, spent) {
      call.retransmit = this.io.setTimer(() => {
        if (this.call !== call || call.state !== "answered") return;
        if (spent + interval >= TRANSACTION_MS) {
          // No ACK within 64*T1: the call is dead (RFC 3261 13.3.1.4).
          this.io.emit("error", { reason: "no ACK for the 200" });
          this.hangup();
          return;
        }
        this.io.send(text);
        this._retransmit(call, text, Math.min(interval * 2, T2), spent + interval);
      }, interval);
    }

    _ack(ack, call) {
      if (!call || !this._inDialog(call, ack)) return; // an ACK to a non-2xx, or stray
      if (call.state === "answered" && ack.cseq === call.invite.cseq) {
        this.io.clearTimer(call.retransmit);
        call.state = "confirmed";
        this.io.emit("confirmed", {});
      } else if (call.state === "confirmed" && call.updating) {
        this.io.clearTimer(call.retransmit);
        call.updating = false;
      }
    }

    _cancel(cancel, call) {
      const branch = param(header(cancel, "via"), "branch");
      if (!call || call.branch !== branch) {
        this._respond(cancel, 481, "Call/Transaction Does Not Exist");
        return;
      }
      this._respond(cancel, 200, "OK", { toTag: call.localTag }); // the tag of the INVITE's
      if (call.state === "ringing" || call.state === "answering") {
        this._final(call.invite, 487, "Request Terminated", call.localTag);
        this._end("remote", "cancel");
      }
    }

    // A re-INVITE in our dialog (hold, resume, session refresh): the media glue answers the
    // new offer on the same RTCPeerConnection; without an offer, our current SDP goes out.
    async _reInvite(request, call) {
      if (!this._inDialog(call, request)) {
        this._respond(request, 481, "Call/Transaction Does Not Exist");
        return;
      }
      if (request.cseq <= call.remoteSeq) {
        this._respond(request, 500, "Server Internal Error", { lines: [["Retry-After", "1"]] });
        return;
      }
      call.remoteSeq = request.cseq;
      if (call.state !== "confirmed" || call.updating) {
        // RFC 3261 14.2: an INVITE while ours is still open.
        this._respond(request, 491, "Request Pending");
        return;
      }
      call.updating = true;
      const contact = header(request, "contact");
      if (contact) call.remoteTarget = uriOf(contact);
      let sdp;
      try {
        sdp = request.body ? await this.io.media.update(request.body) : this.io.media.offer();
      } catch (error) {
        call.updating = false;
        this._respond(request, 488, "Not Acceptable Here");
        return;
      }
      if (this.call !== call || call.state !== "confirmed") return;
      call.localSdp = sdp;
      const ok = this._respond(request, 200, "OK", {
        lines: [["Contact", this.contact], ["Allow", ALLOW], ["Content-Type", "application/sdp"]],
        body: sdp,
      });
      this._retransmitUpdate(call, ok, T1, 0);
    }

    _retransmitUpdate(call, text, interval, spent) {
      call.retransmit = this.io.setTimer(() => {
        if (this.call !== call || !call.updating) return;
        if (spent + interval >= TRANSACTION_MS) {
          call.updating = false;
          this.hangup();
          return;
        }
        this.io.send(text);
        this._retransmitUpdate(call, text, Math.min(interval * 2, T2), spent + interval);
      }, interval);
    }

    // -- the user's acts -------------------------------------------------------------------

    // Ends the call: declines it while it rings (603), BYE once answered.
    hangup() {
      const call = this.call;
      if (!call) return;
      if (call.state === "ringing" || call.state === "answering") {
        this._final(call.invite, 603, "Decline", call.localTag);
        this._end("local", "declined");
        return;
      }
      call.localSeq += 1;
      const lines = [
        ["Via", `SIP/2.0/${this.transport} ${this.host};branch=z9hG4bK${token()}`],
        ["Max-Forwards", "70"],
      ];
      for (const route of call.routes) lines.push(["Route", route]);
      lines.push(
        ["From", header(call.invite, "to").includes(";tag=")
          ? header(call.invite, "to") : `${header(call.invite, "to")};tag=${call.localTag}`],
        ["To", header(call.invite, "from")],
        ["Call-ID", call.callId],
        ["CSeq", `${call.localSeq} BYE`],
      );
      this.io.send(buildRequest("BYE", call.remoteTarget, lines));
      this._end("local", "bye");
    }

    _end(by, reason) {
      const call = this.call;
      if (!call) return;
      this.io.clearTimer(call.retransmit);
      call.state = "ended";
      this.call = null;
      if (call.lastResponse && !this.ended.has(call.callId)) this._remember(call.callId, call.lastResponse);
      this.io.media.close();
      this.io.emit("ended", { by, reason });
    }

    // The socket closed: whatever was up is gone with it (the engine ends the call too).
    closed() {
      this.io.clearTimer(this.registration.timer);
      this.registration.state = "off";
      if (this.call) this._end("remote", "connection lost");
    }
  }

  const api = {
    parse, header, headers, param, uriOf, partyOf, splitList, buildRequest, buildResponse,
    asksAutoAnswer, byteLength, Phone, SipParseError,
  };
  if (typeof module !== "undefined" && module.exports) module.exports = api;
  else root.SipPhone = api;
})(typeof window !== "undefined" ? window : globalThis);
