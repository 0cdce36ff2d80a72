"""The one control model over two datapaths: the `Datapath` boundary, the controller
that applies and persists changes, the command language, listing records and the
control-socket protocol."""
