"""BPJS Antrean RS protocol facts as plain code: the signed headers (``signing``), the
encrypted ``response`` field (``crypto``), request bodies (``payloads``), what an
answer means (``results``), and a visit's steps (``plan``, ``flow``). No I/O and
nothing of the database; imports only domain."""
