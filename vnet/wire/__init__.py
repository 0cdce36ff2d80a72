"""What crosses the underlay: message formats, sealed messages, and the counters and
drop reasons both datapaths report."""
