"""`vn capture`: the frames of one vnet on this host as pcapng (doc/capture.md).

`points` finds where the vnet's frames cross on this host, `bpf` compiles the
tcpdump filter with libpcap, `session` reads packet sockets (and the datapath's capture
stream for socket endpoints) into the `pcapng` writer, `underlay` filters and opens
the encapsulated packets, `run` puts them together for the command line."""
