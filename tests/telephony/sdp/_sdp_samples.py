"""Session descriptions as real peers write them (golden data for round trips and offer/answer).

BARESIP was captured from baresip 1.0.0 on this machine (INVITE to a UDP listener); the others
are written by hand the way those stacks produce them (pyVoIP 1.6.8's SIP.py gen_sdp, SIPp 3.6.1's
built-in uac_pcap scenario after keyword substitution, Asterisk, FreeSWITCH, a Cisco gateway's
hold, a T.38 switch-over, an IPv6 audio+video offer).
"""

from __future__ import annotations


def crlf(text: str) -> bytes:
    return "".join(line + "\r\n" for line in text.strip("\n").split("\n")).encode()


BARESIP = crlf("""
v=0
o=- 1829422210 1313813251 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
a=tool:baresip 1.0.0
m=audio 35508 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendrecv
a=label:1
a=rtcp-rsize
a=ssrc:3930439739 cname:sip:15550001@127.0.0.1:35461
a=minptime:20
a=ptime:20
""")

PYVOIP = crlf("""
v=0
o=pyVoIP 1234567890 1234567892 IN IP4 127.0.0.1
s=pyVoIP 1.6.8
c=IN IP4 127.0.0.1
t=0 0
m=audio 10000 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
a=maxptime:150
a=sendrecv
""")

SIPP_UAC_PCAP = crlf("""
v=0
o=user1 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 8 101
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-11,16
""")

SIPP_UAS = crlf("""
v=0
o=user1 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6002 RTP/AVP 0
a=rtpmap:0 PCMU/8000
""")

ASTERISK = crlf("""
v=0
o=- 1730000000 1730000001 IN IP4 192.0.2.10
s=Asterisk
c=IN IP4 192.0.2.10
t=0 0
m=audio 14562 RTP/AVP 0 8 3 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:3 GSM/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=maxptime:150
a=sendrecv
""")

FREESWITCH = crlf("""
v=0
o=FreeSWITCH 1700000000 1700000001 IN IP4 198.51.100.7
s=FreeSWITCH
c=IN IP4 198.51.100.7
t=0 0
m=audio 16384 RTP/AVP 9 0 8 96 101
b=AS:64
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:96 opus/48000/2
a=fmtp:96 useinbandfec=1; minptime=10
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendrecv
a=rtcp:16385 IN IP4 198.51.100.7
""")

CISCO_HOLD = crlf("""
v=0
o=CiscoSystemsSIP-GW-UserAgent 4417 4418 IN IP4 192.0.2.20
s=SIP Call
c=IN IP4 0.0.0.0
t=0 0
m=audio 19046 RTP/AVP 0 101
c=IN IP4 0.0.0.0
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
""")

T38 = crlf("""
v=0
o=- 1 2 IN IP4 203.0.113.5
s=-
c=IN IP4 203.0.113.5
t=0 0
m=image 4000 udptl t38
a=T38FaxVersion:0
a=T38MaxBitRate:14400
a=T38FaxRateManagement:transferredTCF
""")

IPV6_AUDIO_VIDEO = crlf("""
v=0
o=alice 2890844526 2890844526 IN IP6 2001:db8::1
s=Talk
i=A session with video
c=IN IP6 2001:db8::1
b=AS:380
t=0 0
a=ice-pwd:asd88fgpdd777uzjYhagZg
a=ice-ufrag:8hhY
m=audio 7078 RTP/AVP 96 0 8 101
c=IN IP6 2001:db8::2
a=rtpmap:96 opus/48000/2
a=rtpmap:101 telephone-event/8000
a=rtcp-fb:* trr-int 1000
m=video 9078 RTP/AVP 103
a=rtpmap:103 VP8/90000
a=recvonly
""")

ALL = {
    "baresip": BARESIP,
    "pyvoip": PYVOIP,
    "sipp_uac_pcap": SIPP_UAC_PCAP,
    "sipp_uas": SIPP_UAS,
    "asterisk": ASTERISK,
    "freeswitch": FREESWITCH,
    "cisco_hold": CISCO_HOLD,
    "t38": T38,
    "ipv6_audio_video": IPV6_AUDIO_VIDEO,
}
