-- Media quality of each call's legs (RFC 3550: our reception statistics and the phones' RTCP
-- reports): {"<leg Call-ID>": {packets_received, packets_lost, jitter_ms, packets_sent,
-- rtcp_sent, rtcp_received, far_end: {fraction_lost, packets_lost, jitter_ms, round_trip_ms}}}.
ALTER TABLE calls ADD COLUMN quality JSONB;
