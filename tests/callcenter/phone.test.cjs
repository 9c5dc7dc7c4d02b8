// Unit tests of the agent page's SIP phone (callcenter/web/phone.js) under node's own test
// runner (no npm packages): the parser and builders, and the Phone driven with a fake socket,
// fake timers and fake media. Run by tests/callcenter/test_web_phone.py.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");
const SipPhone = require(path.join(__dirname, "..", "..", "callcenter", "web", "phone.js"));

const SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
  "m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=rtpmap:0 PCMU/8000\r\n";
const ANSWER = "v=0\r\no=- 2 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n";

function msg(lines, body = "") {
  const length = Buffer.byteLength(body, "utf8");
  return `${lines.join("\r\n")}\r\nContent-Length: ${length}\r\n\r\n${body}`;
}

function invite({ callId = "c1", branch = "z9hG4bKinv1", cseq = 1, toTag = null,
                  callInfo = null, body = SDP, method = "INVITE", fromTag = "e1" } = {}) {
  const lines = [
    `${method} sip:101@abc.invalid;transport=ws SIP/2.0`,
    `Via: SIP/2.0/WS 127.0.0.1:8080;branch=${branch}`,
    "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKfar",
    "Record-Route: <sip:127.0.0.1;lr>",
    `From: "Ada Lovelace" <sip:+12125550123@127.0.0.1>;tag=${fromTag}`,
    `To: <sip:101@127.0.0.1>${toTag ? `;tag=${toTag}` : ""}`,
    `Call-ID: ${callId}`,
    `CSeq: ${cseq} ${method}`,
    "Contact: <sip:engine@127.0.0.1:5060>",
  ];
  if (callInfo) lines.push(`Call-Info: ${callInfo}`);
  if (body) lines.push("Content-Type: application/sdp");
  return msg(lines, body);
}

function fakePhone({ answerSdp = ANSWER } = {}) {
  const sent = [];
  const events = [];
  const timers = new Map();
  let next = 1;
  let answering = null;
  const media = {
    closed: 0,
    answer: (offer) => {
      media.offered = offer;
      return answering ? answering.promise : Promise.resolve(answerSdp);
    },
    update: (offer) => Promise.resolve(`${answerSdp}a=updated\r\n`),
    offer: () => answerSdp,
    close: () => { media.closed += 1; },
  };
  const io = {
    send: (text) => sent.push(SipPhone.parse(text)),
    setTimer: (fn, ms) => { const id = next++; timers.set(id, { fn, ms }); return id; },
    clearTimer: (id) => timers.delete(id),
    emit: (kind, detail) => events.push([kind, detail]),
    media,
  };
  const phone = new SipPhone.Phone({ user: "101", domain: "127.0.0.1", io });
  const fire = () => { // runs the timers set so far, once
    const due = [...timers.entries()];
    timers.clear();
    for (const [, { fn }] of due) fn();
  };
  const holdAnswer = () => {
    let resolve;
    const promise = new Promise((ok) => { resolve = ok; });
    answering = { promise };
    return () => { answering = null; resolve(answerSdp); };
  };
  return { phone, sent, events, timers, fire, media, holdAnswer };
}

const kinds = (events) => events.map(([kind]) => kind);
const settle = () => new Promise((resolve) => setImmediate(resolve));

test("parse: compact headers, Via lists in one line, folded lines, byte Content-Length", () => {
  const body = "nöte ✓\r\n"; // 11 bytes, 8 characters
  const text = "MESSAGE sip:101@x SIP/2.0\r\n" +
    "v: SIP/2.0/WS a.invalid;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2\r\n" +
    "Via: SIP/2.0/UDP c;branch=z9hG4bK3\r\n" +
    "f: \"A, B\" <sip:a@x>;tag=1\r\nt: <sip:101@x>\r\ni: abc\r\n" +
    "CSeq: 7 MESSAGE\r\nSubject: one\r\n two\r\nc: text/plain\r\n" +
    `l: ${Buffer.byteLength(body)}\r\n\r\n${body}TRAILING`;
  const parsed = SipPhone.parse(text);
  assert.equal(parsed.request, true);
  assert.equal(parsed.method, "MESSAGE");
  assert.deepEqual(SipPhone.headers(parsed, "via").map((v) => SipPhone.param(v, "branch")),
    ["z9hG4bK1", "z9hG4bK2", "z9hG4bK3"]);
  assert.equal(SipPhone.header(parsed, "Call-ID"), "abc");
  assert.equal(SipPhone.header(parsed, "from"), "\"A, B\" <sip:a@x>;tag=1");
  assert.equal(SipPhone.header(parsed, "subject"), "one two");
  assert.equal(parsed.cseq, 7);
  assert.equal(parsed.body, body);
  assert.equal(SipPhone.byteLength(body), 11);
  // The same bytes as a binary frame.
  assert.equal(SipPhone.parse(new TextEncoder().encode(text)).body, body);
});

test("parse refuses what is not SIP", () => {
  const bad = [
    "hello",
    "INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/WS a;branch=z9hG4bK1\r\n\r\n", // no From...
    invite().replace("CSeq: 1 INVITE", "CSeq: 1 BYE"),
    invite().replace(/Content-Length: \d+/, "Content-Length: 9999"),
    invite().replace(/Content-Length: \d+/, "Content-Length: -1"),
    "SIP/2.0 999 Nope\r\n\r\n",
  ];
  for (const text of bad) assert.throws(() => SipPhone.parse(text), SipPhone.SipParseError, text);
});

test("build: a response copies every Via, adds the To tag, counts the body in bytes", () => {
  const request = SipPhone.parse(invite());
  const text = SipPhone.buildResponse(request, 200, "OK", { toTag: "mine", body: "é" });
  const response = SipPhone.parse(text);
  assert.equal(response.status, 200);
  assert.deepEqual(SipPhone.headers(response, "via"), SipPhone.headers(request, "via"));
  assert.equal(SipPhone.param(SipPhone.header(response, "to"), "tag"), "mine");
  assert.equal(SipPhone.header(response, "record-route"), "<sip:127.0.0.1;lr>");
  assert.equal(SipPhone.header(response, "content-length"), "2");
  assert.match(text, /\r\n\r\né$/);
  const who = SipPhone.partyOf(SipPhone.header(request, "from"));
  assert.deepEqual(who, { name: "Ada Lovelace", user: "+12125550123" });
});

test("register, refresh before expiry, fail over when refused", () => {
  const { phone, sent, events, timers, fire } = fakePhone();
  phone.register();
  const [register] = sent;
  assert.equal(register.method, "REGISTER");
  assert.equal(register.uri, "sip:127.0.0.1");
  assert.equal(SipPhone.header(register, "expires"), "600");
  assert.match(SipPhone.header(register, "contact"), /;transport=ws>$/);
  const ok = SipPhone.buildResponse(register, 200, "OK", {
    toTag: "r", lines: [["Contact", `${SipPhone.header(register, "contact")};expires=300`]],
  });
  phone.receive(ok);
  assert.ok(phone.registered);
  assert.deepEqual(events.at(-1), ["registered", { expires: 300 }]);
  assert.deepEqual([...timers.values()].map((t) => t.ms), [270_000]);
  fire(); // the refresh: the same Call-ID, the next CSeq
  const refresh = sent.at(-1);
  assert.equal(SipPhone.header(refresh, "call-id"), SipPhone.header(register, "call-id"));
  assert.equal(refresh.cseq, register.cseq + 1);
  phone.receive(SipPhone.buildResponse(refresh, 403, "Forbidden", { toTag: "r" }));
  assert.ok(!phone.registered);
  assert.equal(events.at(-1)[0], "unregistered");
  // A stale response (an earlier branch) changes nothing.
  phone.receive(ok);
  assert.ok(!phone.registered);
});

test("an INVITE rings (180), is answered with the media's SDP, the 200 repeats until the ACK", async () => {
  const { phone, sent, events, timers, fire, media } = fakePhone();
  phone.receive(invite());
  const ringing = sent.at(-1);
  assert.equal(ringing.status, 180);
  const tag = SipPhone.param(SipPhone.header(ringing, "to"), "tag");
  assert.ok(tag);
  assert.deepEqual(events.at(-1), ["incoming", {
    caller: { name: "Ada Lovelace", user: "+12125550123" }, autoAnswer: false }]);
  assert.equal(phone.call.state, "ringing"); // no auto-answer without the hint
  await phone.answer();
  const ok = sent.at(-1);
  assert.equal(ok.status, 200);
  assert.equal(ok.body, ANSWER);
  assert.equal(media.offered, SDP);
  assert.equal(SipPhone.header(ok, "content-type"), "application/sdp");
  assert.equal(SipPhone.param(SipPhone.header(ok, "to"), "tag"), tag);
  fire(); // no ACK yet: the 200 again
  assert.equal(sent.at(-1).status, 200);
  assert.equal(sent.length, 3);
  assert.deepEqual([...timers.values()].map((t) => t.ms), [1000]);
  // The INVITE retransmitted: the 200 again, no second call.
  phone.receive(invite());
  assert.equal(sent.at(-1).status, 200);
  phone.receive(invite({ method: "ACK", toTag: tag, body: "" }));
  assert.equal(phone.call.state, "confirmed");
  assert.equal(timers.size, 0);
  assert.deepEqual(kinds(events), ["incoming", "answered", "confirmed"]);
});

test("answer-after=0 answers by itself; a second INVITE while busy gets 486", async () => {
  const { phone, sent, events } = fakePhone();
  phone.receive(invite({ callInfo: "<sip:127.0.0.1>;answer-after=0" }));
  await settle();
  assert.equal(sent.at(-1).status, 200);
  assert.deepEqual(events[0][1].autoAnswer, true);
  phone.receive(invite({ callId: "c2", branch: "z9hG4bKinv2" }));
  assert.equal(sent.at(-1).status, 486);
  assert.equal(SipPhone.header(sent.at(-1), "call-id"), "c2");
  assert.equal(phone.call.callId, "c1");
  // Other answer-after values are no auto-answer.
  const other = fakePhone();
  other.phone.receive(invite({ callInfo: "<sip:x>;answer-after=5" }));
  await settle();
  assert.equal(other.sent.at(-1).status, 180);
});

test("CANCEL while ringing: 200 to it, 487 to the INVITE; even while the answer is made", async () => {
  for (const during of [false, true]) {
    const { phone, sent, events, media, holdAnswer } = fakePhone();
    phone.receive(invite());
    let release = null;
    let answering = null;
    if (during) {
      release = holdAnswer();
      answering = phone.answer();
    }
    phone.receive(invite({ method: "CANCEL", body: "" }));
    const [cancelOk, terminated] = sent.slice(-2);
    assert.deepEqual([cancelOk.status, cancelOk.cseqMethod], [200, "CANCEL"]);
    assert.deepEqual([terminated.status, terminated.cseqMethod], [487, "INVITE"]);
    const tagOf = (m) => SipPhone.param(SipPhone.header(m, "to"), "tag");
    assert.equal(tagOf(cancelOk), tagOf(terminated));
    assert.deepEqual(events.at(-1), ["ended", { by: "remote", reason: "cancel" }]);
    assert.equal(media.closed, 1);
    if (during) {
      release();
      await answering;
      assert.equal(sent.at(-1).status, 487); // no 200 after the 487
    }
    assert.equal(phone.call, null);
    phone.receive(invite({ method: "ACK", toTag: "x", body: "" })); // the 487's ACK: nothing
    phone.receive(invite()); // the INVITE again: its final response again
    assert.equal(sent.at(-1).status, 487);
  }
  const { phone, sent } = fakePhone();
  phone.receive(invite({ method: "CANCEL", body: "" }));
  assert.equal(sent.at(-1).status, 481);
});

async function connected() {
  const fake = fakePhone();
  fake.phone.receive(invite());
  await fake.phone.answer();
  const tag = fake.phone.call.localTag;
  fake.phone.receive(invite({ method: "ACK", toTag: tag, body: "" }));
  return { ...fake, tag };
}

test("BYE from the far end ends the call; ours goes to the Contact by the Record-Route", async () => {
  let { phone, sent, events, tag } = await connected();
  phone.receive(invite({ method: "BYE", toTag: "wrong", cseq: 2, body: "" }));
  assert.equal(sent.at(-1).status, 481);
  phone.receive(invite({ method: "BYE", toTag: tag, cseq: 2, body: "" }));
  assert.equal(sent.at(-1).status, 200);
  assert.deepEqual(events.at(-1), ["ended", { by: "remote", reason: "bye" }]);

  ({ phone, sent, events, tag } = await connected());
  phone.hangup();
  const bye = sent.at(-1);
  assert.equal(bye.method, "BYE");
  assert.equal(bye.uri, "sip:engine@127.0.0.1:5060");
  assert.equal(SipPhone.header(bye, "route"), "<sip:127.0.0.1;lr>");
  assert.equal(SipPhone.param(SipPhone.header(bye, "from"), "tag"), tag);
  assert.equal(SipPhone.param(SipPhone.header(bye, "to"), "tag"), "e1");
  assert.equal(SipPhone.header(bye, "call-id"), "c1");
  assert.deepEqual(events.at(-1), ["ended", { by: "local", reason: "bye" }]);
  phone.receive(SipPhone.buildResponse(bye, 200, "OK"));
  assert.equal(phone.call, null);
});

test("hang up while ringing declines (603)", () => {
  const { phone, sent, events } = fakePhone();
  phone.receive(invite());
  phone.hangup();
  assert.equal(sent.at(-1).status, 603);
  assert.deepEqual(events.at(-1), ["ended", { by: "local", reason: "declined" }]);
});

test("a re-INVITE is answered from the same media; an old CSeq and unknown dialogs are refused", async () => {
  const { phone, sent, tag, timers } = await connected();
  phone.receive(invite({ toTag: tag, cseq: 2, branch: "z9hG4bKre" }));
  await settle();
  const ok = sent.at(-1);
  assert.equal(ok.status, 200);
  assert.match(ok.body, /a=updated/);
  assert.equal(timers.size, 1); // repeated until its ACK
  phone.receive(invite({ method: "ACK", toTag: tag, cseq: 2, body: "" }));
  assert.equal(timers.size, 0);
  phone.receive(invite({ toTag: tag, cseq: 2, branch: "z9hG4bKold" }));
  assert.equal(sent.at(-1).status, 500);
  phone.receive(invite({ toTag: tag, cseq: 3, body: "", branch: "z9hG4bKnooffer" }));
  await settle();
  assert.equal(sent.at(-1).status, 200);
  assert.equal(sent.at(-1).body, ANSWER); // the current SDP as the offer
  phone.receive(invite({ toTag: "nope", callId: "other", cseq: 9, branch: "z9hG4bKx" }));
  assert.equal(sent.at(-1).status, 481);
});

test("OPTIONS is answered; unknown methods get 405 with Allow; bad frames lose nothing", async () => {
  const { phone, sent, events } = await connected();
  phone.receive(invite({ method: "OPTIONS", body: "" }));
  assert.equal(sent.at(-1).status, 200);
  assert.match(SipPhone.header(sent.at(-1), "allow"), /INVITE/);
  phone.receive(invite({ method: "MESSAGE", body: "" }));
  assert.equal(sent.at(-1).status, 405);
  const count = sent.length;
  phone.receive("garbage\r\n\r\n");
  assert.equal(sent.length, count);
  assert.equal(events.at(-1)[0], "error");
  assert.equal(phone.call.state, "confirmed");
});

test("an INVITE without an offer is refused (488); a lost socket ends the call", async () => {
  const { phone, sent } = fakePhone();
  phone.receive(invite({ body: "" }));
  assert.equal(sent.at(-1).status, 488);
  assert.equal(phone.call, null);
  const up = await connected();
  up.phone.closed();
  assert.deepEqual(up.events.at(-1), ["ended", { by: "remote", reason: "connection lost" }]);
});
