/* The native RTP relay: the packet path of a bridged call in C (telephony.rtp._relay).
 *
 * One Port is one leg's RTP socket. The event loop calls Port.readable() when the socket has
 * datagrams (loop.add_reader). A port reads them itself (recvfrom, up to READ_BATCH per call)
 * and either hands each one to Python (`on_datagram(data, addr)`, the leg's full packet path in
 * telephony/aio/rtp.py) or, once Python engaged it with a peer, relays it natively:
 *
 *   from the latched source, the negotiated audio payload type, the current SSRC, in sequence
 *   -> RFC 3550 A.1 counters and A.8 jitter of the source, the header renumbered when the
 *      peer's stream continues ours (StreamRewriter's steady state), sendto() from the peer's
 *      socket to the peer's far end with the peer's sending counters, and the payload decoded
 *      to 16-bit PCM appended to a bytearray (a recorder's buffer for this side), as Python's
 *      push would.
 *
 * Anything else (another source, another SSRC or payload type, a sequence jump, RTCP, STUN) goes
 * to Python, which first disengages the pair (copying these counters back to its objects) and
 * then takes the packet on its usual path. So Python's objects stay the truth; while a pair is
 * engaged its counters live here, and Python copies them out before it reads them (RTCP reports,
 * metrics) and takes them back when it disengages. Everything runs on the event loop's thread
 * with the GIL held: no locking.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define READ_BATCH 64
#define MAX_DATAGRAM 2048
#define RTP_SEQ_MOD 65536
#define MAX_DROPOUT 3000
#define MAX_MISORDER 100

static int16_t ulaw_table[256];
static int16_t alaw_table[256];

static void build_tables(void)
{
    for (int i = 0; i < 256; i++) {
        /* G.711 mu-law: complement, then sign, 3-bit exponent and 4-bit mantissa. */
        int u = ~i & 0xFF;
        int t = ((u & 0x0F) << 3) + 0x84;
        t <<= (u & 0x70) >> 4;
        ulaw_table[i] = (int16_t)((u & 0x80) ? (0x84 - t) : (t - 0x84));
        /* G.711 A-law: even bits inverted. */
        int a = i ^ 0x55;
        int m = (a & 0x0F) << 4;
        int seg = (a & 0x70) >> 4;
        if (seg == 0)
            m += 8;
        else if (seg == 1)
            m += 0x108;
        else
            m = (m + 0x108) << (seg - 1);
        alaw_table[i] = (int16_t)((a & 0x80) ? m : -m);
    }
}

static double monotonic_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct Port {
    PyObject_HEAD
    int fd;
    int family;
    PyObject *on_datagram; /* callable(data: bytes, addr: tuple) for the Python path */
    struct Port *peer;     /* engaged: where relayed packets go out (a strong reference) */
    int engaged;
    struct sockaddr_storage source; /* the far end we take packets from (latched) */
    socklen_t source_len;
    struct sockaddr_storage destination; /* the peer's far end, reached from the peer's socket */
    socklen_t destination_len;
    int codec_pt;
    int law;         /* what the sink gets decoded from: 0 mu-law, 1 A-law */
    PyObject *sink;  /* a bytearray the decoded audio is appended to, or NULL */
    Py_ssize_t sink_max; /* bytes it may hold: the oldest go beyond (the recorder's bound) */
    /* Reception of the current source (mirrors telephony.rtp.source.RtpSource). */
    unsigned int ssrc;
    unsigned int max_seq;
    long long cycles;
    long long received;
    double jitter;
    double transit;
    int has_transit;
    int clock_rate;
    /* The leg's counters (RtpEndpoint) and what it sent (RtcpSession). */
    long long packets_in;
    long long packets_out;
    double last_received;
    long long packets_sent;
    long long octets_sent;
    double last_sent_at;
    unsigned char last_sent[12];
    int sent_new; /* last_sent changed since Python last copied it */
    unsigned char relayed[12];
    int relayed_new;
    long long relayed_natively; /* packets this port received and relayed in C */
    long long send_errors;
    long long pcm_dropped; /* bytes the sink's bound dropped */
    /* Renumbering of what is relayed INTO this leg (telephony.rtp.StreamRewriter's steady
     * state: one source, fixed offsets); a source switch is Python's. */
    int rw_active;
    unsigned int rw_source;
    unsigned int rw_seq_offset;
    unsigned int rw_ts_offset;
    unsigned int rw_last_in_seq;
    unsigned int rw_out_seq;
    unsigned int rw_out_ts;
    unsigned int rw_ssrc;
    long long rw_packets;
    long long rw_octets;
} Port;

static PyTypeObject PortType;

static int Port_traverse(Port *self, visitproc visit, void *arg)
{
    Py_VISIT(self->on_datagram);
    Py_VISIT((PyObject *)self->peer);
    Py_VISIT(self->sink);
    return 0;
}

static int Port_clear(Port *self)
{
    Py_CLEAR(self->on_datagram);
    Py_CLEAR(self->peer);
    Py_CLEAR(self->sink);
    self->engaged = 0;
    return 0;
}

static void Port_dealloc(Port *self)
{
    PyObject_GC_UnTrack(self);
    Port_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Port_init(Port *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"fd", "family", "on_datagram", NULL};
    int fd, family;
    PyObject *on_datagram;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iiO", kwlist, &fd, &family, &on_datagram))
        return -1;
    if (family != AF_INET && family != AF_INET6) {
        PyErr_SetString(PyExc_ValueError, "family is AF_INET or AF_INET6");
        return -1;
    }
    if (!PyCallable_Check(on_datagram)) {
        PyErr_SetString(PyExc_TypeError, "on_datagram must be callable");
        return -1;
    }
    self->fd = fd;
    self->family = family;
    Py_INCREF(on_datagram);
    Py_XSETREF(self->on_datagram, on_datagram);
    self->clock_rate = 8000;
    return 0;
}

/* The source address as Python's socket module gives it: (host, port) or IPv6's 4-tuple. */
static PyObject *address_tuple(const struct sockaddr_storage *addr)
{
    char host[INET6_ADDRSTRLEN];
    if (addr->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
        if (!inet_ntop(AF_INET, &in->sin_addr, host, sizeof host))
            return PyErr_SetFromErrno(PyExc_OSError);
        return Py_BuildValue("(si)", host, ntohs(in->sin_port));
    }
    if (addr->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;
        if (!inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host))
            return PyErr_SetFromErrno(PyExc_OSError);
        return Py_BuildValue("(siII)", host, ntohs(in6->sin6_port),
                             (unsigned int)ntohl(in6->sin6_flowinfo),
                             (unsigned int)in6->sin6_scope_id);
    }
    Py_RETURN_NONE;
}

/* A Python address tuple as a sockaddr of the port's family; -1 with an exception if not. */
static int parse_address(Port *self, PyObject *tuple, struct sockaddr_storage *out, socklen_t *len)
{
    const char *host;
    int port;
    unsigned int flowinfo = 0, scope_id = 0;
    if (!PyTuple_Check(tuple) ||
        !PyArg_ParseTuple(tuple, "si|II", &host, &port, &flowinfo, &scope_id))
        return -1;
    if (port < 0 || port > 65535) {
        PyErr_SetString(PyExc_ValueError, "port out of range");
        return -1;
    }
    memset(out, 0, sizeof *out);
    if (self->family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)out;
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &in->sin_addr) != 1) {
            PyErr_Format(PyExc_ValueError, "not an IPv4 address: %s", host);
            return -1;
        }
        *len = sizeof *in;
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        in6->sin6_flowinfo = htonl(flowinfo);
        in6->sin6_scope_id = scope_id;
        if (inet_pton(AF_INET6, host, &in6->sin6_addr) != 1) {
            PyErr_Format(PyExc_ValueError, "not an IPv6 address: %s", host);
            return -1;
        }
        *len = sizeof *in6;
    }
    return 0;
}

static int same_source(const Port *self, const struct sockaddr_storage *addr)
{
    if (addr->ss_family != self->source.ss_family)
        return 0;
    if (addr->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)addr;
        const struct sockaddr_in *b = (const struct sockaddr_in *)&self->source;
        return a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)addr;
    const struct sockaddr_in6 *b = (const struct sockaddr_in6 *)&self->source;
    return a->sin6_port == b->sin6_port &&
           memcmp(&a->sin6_addr, &b->sin6_addr, sizeof a->sin6_addr) == 0 &&
           a->sin6_scope_id == b->sin6_scope_id;
}

/* Append the payload decoded to the sink, keeping at most sink_max bytes (the newest). */
static void capture(Port *self, const unsigned char *payload, Py_ssize_t n)
{
    PyObject *sink = self->sink;
    Py_ssize_t had = PyByteArray_GET_SIZE(sink);
    if (PyByteArray_Resize(sink, had + 2 * n) < 0) {
        PyErr_Clear(); /* exported (a memoryview holds it) or no memory: this frame is lost */
        self->pcm_dropped += 2 * n;
        return;
    }
    const int16_t *table = self->law ? alaw_table : ulaw_table;
    char *bytes = PyByteArray_AS_STRING(sink);
    int16_t *out = (int16_t *)(bytes + had);
    for (Py_ssize_t i = 0; i < n; i++)
        out[i] = table[payload[i]]; /* native byte order, as audioop's lin */
    Py_ssize_t total = had + 2 * n;
    if (total > self->sink_max) {
        Py_ssize_t excess = total - self->sink_max;
        memmove(bytes, bytes + excess, (size_t)(total - excess));
        if (PyByteArray_Resize(sink, total - excess) < 0)
            PyErr_Clear();
        self->pcm_dropped += excess;
    }
}

/* Relay one packet natively; 0 when Python must take it. */
static int relay(Port *self, unsigned char *data, Py_ssize_t n, const struct sockaddr_storage *src)
{
    if (n < 12 || (data[0] & 0xC0) != 0x80 || (data[1] & 0x7F) != self->codec_pt)
        return 0;
    if (!same_source(self, src))
        return 0;
    unsigned int seq = ((unsigned int)data[2] << 8) | data[3];
    unsigned int ts = ((unsigned int)data[4] << 24) | ((unsigned int)data[5] << 16) |
                      ((unsigned int)data[6] << 8) | data[7];
    unsigned int ssrc = ((unsigned int)data[8] << 24) | ((unsigned int)data[9] << 16) |
                        ((unsigned int)data[10] << 8) | data[11];
    if (ssrc != self->ssrc)
        return 0;
    /* Payload bounds: CSRCs, a header extension, padding (as media_session._payload_bounds). */
    Py_ssize_t start = 12 + 4 * (data[0] & 0x0F), end = n;
    if ((data[0] & 0x10) && n >= start + 4)
        start += 4 + 4 * (((Py_ssize_t)data[start + 2] << 8) | data[start + 3]);
    if (start > n)
        return 0;
    if ((data[0] & 0x20) && end > start)
        end -= data[n - 1];
    if (end < start)
        return 0;
    /* RFC 3550 A.1 for a validated source: in order (a gap is loss) or late; a big jump is
     * Python's (its probation and resynchronisation live there). */
    unsigned int udelta = (seq - self->max_seq) & 0xFFFF;
    if (udelta >= MAX_DROPOUT && udelta <= RTP_SEQ_MOD - MAX_MISORDER)
        return 0;
    Port *peer = self->peer;
    if (peer->rw_active) {
        /* The stream into the peer continues ours: only the same source without a jump keeps
         * the offsets (StreamRewriter.rewrite); a switch is Python's. */
        unsigned int step = (seq - peer->rw_last_in_seq) & 0xFFFF;
        if (ssrc != peer->rw_source || (step >= MAX_DROPOUT && step <= RTP_SEQ_MOD - MAX_MISORDER))
            return 0;
    }
    double now = monotonic_now();
    if (udelta < MAX_DROPOUT) {
        if (seq < self->max_seq)
            self->cycles += RTP_SEQ_MOD;
        self->max_seq = seq;
    }
    self->received++;
    double transit = now * self->clock_rate - (double)ts;
    if (self->has_transit) {
        double d = transit - self->transit;
        if (d < 0)
            d = -d;
        if (d >= 2147483648.0) { /* the timestamp wrapped between the two packets */
            d -= 4294967296.0;
            if (d < 0)
                d = -d;
        }
        self->jitter += (d - self->jitter) / 16.0;
    }
    self->transit = transit;
    self->has_transit = 1;
    self->packets_in++;
    self->last_received = now;
    self->relayed_natively++;

    if (peer->rw_active) {
        unsigned int out_seq = (seq + peer->rw_seq_offset) & 0xFFFF;
        unsigned int out_ts = ts + peer->rw_ts_offset; /* modulo 2^32 by unsigned arithmetic */
        peer->rw_last_in_seq = seq;
        if (((out_seq - peer->rw_out_seq) & 0xFFFF) < 0x8000) {
            peer->rw_out_seq = out_seq;
            peer->rw_out_ts = out_ts;
        }
        peer->rw_packets++;
        peer->rw_octets += n - 12 - 4 * (data[0] & 0x0F);
        data[2] = (unsigned char)(out_seq >> 8);
        data[3] = (unsigned char)out_seq;
        data[4] = (unsigned char)(out_ts >> 24);
        data[5] = (unsigned char)(out_ts >> 16);
        data[6] = (unsigned char)(out_ts >> 8);
        data[7] = (unsigned char)out_ts;
        data[8] = (unsigned char)(peer->rw_ssrc >> 24);
        data[9] = (unsigned char)(peer->rw_ssrc >> 16);
        data[10] = (unsigned char)(peer->rw_ssrc >> 8);
        data[11] = (unsigned char)peer->rw_ssrc;
    }
    ssize_t sent = sendto(peer->fd, data, (size_t)n, 0, (struct sockaddr *)&self->destination,
                          self->destination_len);
    if (sent < 0) {
        peer->send_errors++; /* as a full or refused socket in Python: the packet is lost */
    } else {
        peer->packets_out++;
        peer->packets_sent++;
        peer->octets_sent += n - 12;
        peer->last_sent_at = now;
        memcpy(peer->last_sent, data, 12);
        peer->sent_new = 1;
    }
    memcpy(peer->relayed, data, 12);
    peer->relayed_new = 1;
    if (self->sink != NULL)
        capture(self, data + start, end - start);
    return 1;
}

static PyObject *Port_readable(Port *self, PyObject *Py_UNUSED(ignored))
{
    unsigned char buffer[MAX_DATAGRAM];
    for (int i = 0; i < READ_BATCH && self->fd >= 0; i++) {
        struct sockaddr_storage src;
        socklen_t srclen = sizeof src;
        ssize_t n = recvfrom(self->fd, buffer, sizeof buffer, MSG_DONTWAIT,
                             (struct sockaddr *)&src, &srclen);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            /* EAGAIN: drained. ICMP errors (ECONNREFUSED) from an earlier send: skip them. */
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            continue;
        }
        if (self->engaged && relay(self, buffer, n, &src))
            continue;
        if (self->on_datagram == NULL)
            continue;
        PyObject *data = PyBytes_FromStringAndSize((const char *)buffer, n);
        if (data == NULL)
            return NULL;
        PyObject *addr = address_tuple(&src);
        if (addr == NULL) {
            Py_DECREF(data);
            return NULL;
        }
        PyObject *result = PyObject_CallFunctionObjArgs(self->on_datagram, data, addr, NULL);
        Py_DECREF(data);
        Py_DECREF(addr);
        if (result == NULL)
            return NULL; /* the loop reports it; the rest waits for the next call */
        Py_DECREF(result);
    }
    Py_RETURN_NONE;
}

static PyObject *Port_engage(Port *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"peer",     "source", "destination", "codec_pt",
                             "law",      "sink",   "sink_max",    NULL};
    PyObject *peer, *source, *destination, *sink;
    int codec_pt, law;
    Py_ssize_t sink_max;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!OOiiOn", kwlist, &PortType, &peer, &source,
                                     &destination, &codec_pt, &law, &sink, &sink_max))
        return NULL;
    if (sink != Py_None && !PyByteArray_Check(sink)) {
        PyErr_SetString(PyExc_TypeError, "sink is a bytearray or None");
        return NULL;
    }
    if (sink_max < 0 || sink_max % 2) {
        PyErr_SetString(PyExc_ValueError, "sink_max is an even number of bytes");
        return NULL;
    }
    if (peer == (PyObject *)self) {
        PyErr_SetString(PyExc_ValueError, "a port cannot relay to itself");
        return NULL;
    }
    if (((Port *)peer)->fd < 0 || self->fd < 0) {
        PyErr_SetString(PyExc_ValueError, "the port is closed");
        return NULL;
    }
    if (parse_address(self, source, &self->source, &self->source_len) < 0)
        return NULL;
    if (parse_address((Port *)peer, destination, &self->destination, &self->destination_len) < 0)
        return NULL;
    Py_INCREF(peer);
    Py_XSETREF(self->peer, (Port *)peer);
    self->codec_pt = codec_pt & 0x7F;
    self->law = law ? 1 : 0;
    if (sink == Py_None) {
        Py_CLEAR(self->sink);
    } else {
        Py_INCREF(sink);
        Py_XSETREF(self->sink, sink);
    }
    self->sink_max = sink_max;
    self->engaged = 1;
    Py_RETURN_NONE;
}

static PyObject *Port_disengage(Port *self, PyObject *Py_UNUSED(ignored))
{
    self->engaged = 0;
    Py_CLEAR(self->peer);
    Py_CLEAR(self->sink);
    Py_RETURN_NONE;
}

/* Header bytes changed since last asked (None when not): what Python copies into its objects. */
static PyObject *take_header(unsigned char *header, int *fresh)
{
    if (!*fresh)
        Py_RETURN_NONE;
    *fresh = 0;
    return PyBytes_FromStringAndSize((const char *)header, 12);
}

static PyObject *Port_take_last_sent(Port *self, PyObject *Py_UNUSED(ignored))
{
    return take_header(self->last_sent, &self->sent_new);
}

static PyObject *Port_take_relayed(Port *self, PyObject *Py_UNUSED(ignored))
{
    return take_header(self->relayed, &self->relayed_new);
}

static PyObject *Port_close(Port *self, PyObject *Py_UNUSED(ignored))
{
    self->fd = -1;
    Port_clear(self);
    Py_RETURN_NONE;
}

static PyMethodDef Port_methods[] = {
    {"readable", (PyCFunction)Port_readable, METH_NOARGS,
     "Read what the socket holds (the event loop's reader callback)."},
    {"engage", (PyCFunction)(void (*)(void))Port_engage, METH_VARARGS | METH_KEYWORDS,
     "engage(peer, source, destination, codec_pt, law, sink, sink_max): relay packets from\n"
     "`source` out of `peer`'s socket to `destination`; decoded audio goes to `sink`."},
    {"disengage", (PyCFunction)Port_disengage, METH_NOARGS,
     "Hand every packet to Python again."},
    {"take_last_sent", (PyCFunction)Port_take_last_sent, METH_NOARGS,
     "The header of the last packet sent natively, once; else None."},
    {"take_relayed", (PyCFunction)Port_take_relayed, METH_NOARGS,
     "The header of the last packet relayed to this leg natively, once; else None."},
    {"close", (PyCFunction)Port_close, METH_NOARGS, "Forget the socket and the peer."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Port_members[] = {
    {"fd", T_INT, offsetof(Port, fd), READONLY, NULL},
    {"engaged", T_INT, offsetof(Port, engaged), READONLY, NULL},
    {"ssrc", T_UINT, offsetof(Port, ssrc), 0, NULL},
    {"max_seq", T_UINT, offsetof(Port, max_seq), 0, NULL},
    {"cycles", T_LONGLONG, offsetof(Port, cycles), 0, NULL},
    {"received", T_LONGLONG, offsetof(Port, received), 0, NULL},
    {"jitter", T_DOUBLE, offsetof(Port, jitter), 0, NULL},
    {"transit", T_DOUBLE, offsetof(Port, transit), 0, NULL},
    {"has_transit", T_INT, offsetof(Port, has_transit), 0, NULL},
    {"clock_rate", T_INT, offsetof(Port, clock_rate), 0, NULL},
    {"packets_in", T_LONGLONG, offsetof(Port, packets_in), 0, NULL},
    {"packets_out", T_LONGLONG, offsetof(Port, packets_out), 0, NULL},
    {"last_received", T_DOUBLE, offsetof(Port, last_received), 0, NULL},
    {"packets_sent", T_LONGLONG, offsetof(Port, packets_sent), 0, NULL},
    {"octets_sent", T_LONGLONG, offsetof(Port, octets_sent), 0, NULL},
    {"last_sent_at", T_DOUBLE, offsetof(Port, last_sent_at), 0, NULL},
    {"relayed_natively", T_LONGLONG, offsetof(Port, relayed_natively), READONLY, NULL},
    {"send_errors", T_LONGLONG, offsetof(Port, send_errors), READONLY, NULL},
    {"pcm_dropped", T_LONGLONG, offsetof(Port, pcm_dropped), READONLY, NULL},
    {"rw_active", T_INT, offsetof(Port, rw_active), 0, NULL},
    {"rw_source", T_UINT, offsetof(Port, rw_source), 0, NULL},
    {"rw_seq_offset", T_UINT, offsetof(Port, rw_seq_offset), 0, NULL},
    {"rw_ts_offset", T_UINT, offsetof(Port, rw_ts_offset), 0, NULL},
    {"rw_last_in_seq", T_UINT, offsetof(Port, rw_last_in_seq), 0, NULL},
    {"rw_out_seq", T_UINT, offsetof(Port, rw_out_seq), 0, NULL},
    {"rw_out_ts", T_UINT, offsetof(Port, rw_out_ts), 0, NULL},
    {"rw_ssrc", T_UINT, offsetof(Port, rw_ssrc), 0, NULL},
    {"rw_packets", T_LONGLONG, offsetof(Port, rw_packets), 0, NULL},
    {"rw_octets", T_LONGLONG, offsetof(Port, rw_octets), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject PortType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "telephony.rtp._relay.Port",
    .tp_doc = PyDoc_STR("One leg's RTP socket, read natively; relays to an engaged peer."),
    .tp_basicsize = sizeof(Port),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Port_init,
    .tp_dealloc = (destructor)Port_dealloc,
    .tp_traverse = (traverseproc)Port_traverse,
    .tp_clear = (inquiry)Port_clear,
    .tp_methods = Port_methods,
    .tp_members = Port_members,
};

static PyObject *decode(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer payload;
    int law;
    if (!PyArg_ParseTuple(args, "y*i", &payload, &law))
        return NULL;
    PyObject *out = PyBytes_FromStringAndSize(NULL, 2 * payload.len);
    if (out != NULL) {
        const int16_t *table = law ? alaw_table : ulaw_table;
        int16_t *samples = (int16_t *)PyBytes_AS_STRING(out);
        const unsigned char *in = payload.buf;
        for (Py_ssize_t i = 0; i < payload.len; i++)
            samples[i] = table[in[i]];
    }
    PyBuffer_Release(&payload);
    return out;
}

static PyMethodDef module_methods[] = {
    {"decode", decode, METH_VARARGS,
     "decode(payload, law): G.711 (0 mu-law, 1 A-law) as the native relay decodes it."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef relay_module = {
    PyModuleDef_HEAD_INIT, "telephony.rtp._relay",
    "The native RTP relay of bridged legs (see telephony/aio/rtp.py).", -1, module_methods,
};

PyMODINIT_FUNC PyInit__relay(void)
{
    build_tables();
    if (PyType_Ready(&PortType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&relay_module);
    if (module == NULL)
        return NULL;
    Py_INCREF(&PortType);
    if (PyModule_AddObject(module, "Port", (PyObject *)&PortType) < 0) {
        Py_DECREF(&PortType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
