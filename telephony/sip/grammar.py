"""RFC 3261 (section 25) grammar as named regular expressions.

Each constant quotes the ABNF it implements.  Header values reach these patterns already
unfolded (``CRLF 1*WSP`` replaced by one SP), so LWS is plain ``[ \\t]+`` here.  Patterns
are written to run in linear time: no nested unbounded quantifiers that can backtrack.
Some rules are deliberately more liberal than the RFC where RFC 4475 or field practice
asks for it; each such place says so.
"""

from __future__ import annotations

import logging
import re

logger = logging.getLogger(__name__)

# alphanum = ALPHA / DIGIT
# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" )
TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"

# LWS = [*WSP CRLF] 1*WSP  ; linear whitespace (after unfolding: WSP only)
# SWS = [LWS]              ; sep whitespace
LWS = r"[ \t]+"
SWS = r"[ \t]*"

# quoted-string = SWS DQUOTE *(qdtext / quoted-pair ) DQUOTE
# qdtext = LWS / %x21 / %x23-5B / %x5D-7E / UTF8-NONASCII
# quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
# (liberal: any non-CR/LF character in qdtext and after the backslash)
QUOTED_STRING = r'"(?:[^"\\\r\n]|\\[^\r\n])*"'

# Method = INVITEm / ACKm / OPTIONSm / BYEm / CANCELm / REGISTERm / extension-method
# extension-method = token
METHOD = TOKEN

# SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT   (ABNF literals are case-insensitive)
SIP_VERSION = r"[Ss][Ii][Pp]/[0-9]+\.[0-9]+"

# Request-Line = Method SP Request-URI SP SIP-Version CRLF
# (exactly one SP each; RFC 4475 3.1.2.9 / 3.1.2.10 reject extra or trailing SP)
REQUEST_LINE = re.compile(rf"(?P<method>{METHOD}) (?P<uri>[^ \t]+) (?P<version>{SIP_VERSION})")

# A request line with sloppy spacing; used only to salvage enough for a 400 response.
LOOSE_REQUEST_LINE = re.compile(
    rf"(?P<method>{METHOD})[ \t]+(?P<uri>.+?)[ \t]+(?P<version>{SIP_VERSION})[ \t]*"
)

# Status-Line = SIP-Version SP Status-Code SP Reason-Phrase CRLF
# Status-Code = 3DIGIT (extension-code = 3DIGIT)
# Reason-Phrase = *(reserved / unreserved / escaped / UTF8-NONASCII / UTF8-CONT / SP / HTAB)
# (liberal: a missing SP before an empty Reason-Phrase is tolerated)
REASON_PHRASE = r"[^\x00-\x08\x0a-\x1f\x7f]*"
STATUS_LINE = re.compile(
    rf"(?P<version>{SIP_VERSION}) (?P<status>[0-9]{{3}})(?: (?P<reason>{REASON_PHRASE}))?"
)

# message-header = field-name HCOLON field-value CRLF
# HCOLON = *( SP / HTAB ) ":" SWS ;  header-name = token
HEADER_LINE = re.compile(rf"(?P<name>{TOKEN})[ \t]*:[ \t]*(?P<value>.*)", re.DOTALL)

# hostname = *( domainlabel "." ) toplabel [ "." ]
# domainlabel = alphanum / alphanum *( alphanum / "-" ) alphanum
# toplabel = ALPHA / ALPHA *( alphanum / "-" ) alphanum
# IPv4address = 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT
# (liberal and linear: labels of alphanum, "-" and "_"; a numeric toplabel is accepted, which
# also covers IPv4address; label shape is checked in code, see uri.check_hostname)
HOSTNAME = r"[A-Za-z0-9\-_.]+"

# IPv6reference = "[" IPv6address "]"  (address itself validated with the ipaddress module)
IPV6_REFERENCE = r"\[[0-9A-Fa-f:.]+\]"

# host = hostname / IPv4address / IPv6reference
HOST = rf"(?:{IPV6_REFERENCE}|{HOSTNAME})"

# port = 1*DIGIT
PORT = r"[0-9]+"

# escaped = "%" HEXDIG HEXDIG
ESCAPED = r"%[0-9A-Fa-f]{2}"

# unreserved = alphanum / mark
# mark = "-" / "_" / "." / "!" / "~" / "*" / "'" / "(" / ")"
UNRESERVED_CHARS = r"A-Za-z0-9\-_.!~*'()"

# user = 1*( unreserved / escaped / user-unreserved )
# user-unreserved = "&" / "=" / "+" / "$" / "," / ";" / "?" / "/"
USER = rf"(?:[{UNRESERVED_CHARS}&=+$,;?/]|{ESCAPED})+"
USER_SAFE = "-_.!~*'()&=+$,;?/"

# password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )
PASSWORD = rf"(?:[{UNRESERVED_CHARS}&=+$,]|{ESCAPED})*"
PASSWORD_SAFE = "-_.!~*'()&=+$,"

# uri-parameter = transport-param / user-param / method-param / ttl-param / maddr-param
#                 / lr-param / other-param
# other-param = pname [ "=" pvalue ]
# pname = 1*paramchar ; pvalue = 1*paramchar
# paramchar = param-unreserved / unreserved / escaped
# param-unreserved = "[" / "]" / "/" / ":" / "&" / "+" / "$"
PARAMCHARS = rf"(?:[{UNRESERVED_CHARS}\[\]/:&+$]|{ESCAPED})+"
PARAM_SAFE = "-_.!~*'()[]/:&+$"
URI_PARAMETERS = rf"(?:;{PARAMCHARS}(?:={PARAMCHARS})?)*"

# headers = "?" header *( "&" header )
# header = hname "=" hvalue ; hname = 1*( hnv-unreserved / unreserved / escaped )
# hvalue = *( hnv-unreserved / unreserved / escaped )
# hnv-unreserved = "[" / "]" / "/" / "?" / ":" / "+" / "$"
HNVCHARS = rf"(?:[{UNRESERVED_CHARS}\[\]/?:+$]|{ESCAPED})"
URI_HEADERS = rf"{HNVCHARS}+={HNVCHARS}*(?:&{HNVCHARS}+={HNVCHARS}*)*"
HNV_SAFE = "-_.!~*'()[]/?:+$"

# SIP-URI = "sip:" [ userinfo ] hostport uri-parameters [ headers ]
# SIPS-URI = "sips:" [ userinfo ] hostport uri-parameters [ headers ]
# userinfo = ( user / telephone-subscriber ) [ ":" password ] "@"
# hostport = host [ ":" port ]
SIP_URI = re.compile(
    rf"(?P<scheme>[Ss][Ii][Pp][Ss]?):"
    rf"(?:(?P<user>{USER})(?::(?P<password>{PASSWORD}))?@)?"
    rf"(?P<host>{HOST})(?::(?P<port>{PORT}))?"
    rf"(?P<params>{URI_PARAMETERS})"
    rf"(?:\?(?P<headers>{URI_HEADERS}))?"
)

# absoluteURI = scheme ":" ( hier-part / opaque-part )
# scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
# uric = reserved / unreserved / escaped
# reserved = ";" / "/" / "?" / ":" / "@" / "&" / "=" / "+" / "$" / ","
# (liberal: "[", "]" and "#" are accepted in the opaque part)
SCHEME = r"[A-Za-z][A-Za-z0-9+\-.]*"
ABSOLUTE_URI = re.compile(
    rf"(?P<scheme>{SCHEME}):(?P<opaque>(?:[{UNRESERVED_CHARS};/?:@&=+$,\[\]#]|{ESCAPED})*)"
)

# generic-param = token [ EQUAL gen-value ]
# gen-value = token / host / quoted-string
# EQUAL = SWS "=" SWS ; SEMI = SWS ";" SWS
# (liberal: ":" is accepted inside a token-like value, which covers an unbracketed IPv6
# address in Via received=, and RFC 4475 3.1.1.1 LWS around ";" and "=")
GEN_VALUE = rf"(?:{QUOTED_STRING}|{IPV6_REFERENCE}|[A-Za-z0-9\-.!%*_+`'~:]+)"
GENERIC_PARAM = re.compile(rf"{SWS};{SWS}(?P<name>{TOKEN})(?:{SWS}={SWS}(?P<value>{GEN_VALUE}))?")

# via-parm = sent-protocol LWS sent-by *( SEMI via-params )
# sent-protocol = protocol-name SLASH protocol-version SLASH transport
# protocol-name = "SIP" / token ; protocol-version = token
# transport = "UDP" / "TCP" / "TLS" / "SCTP" / other-transport ; other-transport = token
# sent-by = host [ COLON port ] ; SLASH = SWS "/" SWS ; COLON = SWS ":" SWS
VIA_PARM = re.compile(
    rf"(?P<protocol>{TOKEN}){SWS}/{SWS}(?P<version>{TOKEN}){SWS}/{SWS}(?P<transport>{TOKEN})"
    rf"{LWS}(?P<host>{HOST})(?:{SWS}:{SWS}(?P<port>{PORT}))?"
)

# display-name = *(token LWS)/ quoted-string
# (RFC 4475 3.1.1.6: no LWS is needed between the display name and "<")
TOKEN_DISPLAY_NAME = re.compile(rf"{TOKEN}(?:{LWS}{TOKEN})*")

# callid = word [ "@" word ]
# word = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" / "(" / ")"
#        / "<" / ">" / ":" / "\" / DQUOTE / "/" / "[" / "]" / "?" / "{" / "}" )
WORD = r"""[A-Za-z0-9\-.!%*_+`'~()<>:\\"/\[\]?{}]+"""
CALL_ID = re.compile(rf"{WORD}(?:@{WORD})?")

# CSeq = "CSeq" HCOLON 1*DIGIT LWS Method
CSEQ = re.compile(rf"(?P<seq>[0-9]+){LWS}(?P<method>{METHOD})")

# delta-seconds = 1*DIGIT ; Max-Forwards = "Max-Forwards" HCOLON 1*DIGIT
DIGITS = re.compile(r"[0-9]+")

# media-type = m-type SLASH m-subtype *(SEMI m-parameter)
MEDIA_TYPE = re.compile(rf"(?P<type>{TOKEN}){SWS}/{SWS}(?P<subtype>{TOKEN})")
