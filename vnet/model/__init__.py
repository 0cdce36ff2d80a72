"""The control model's values: vnet ids, addresses, vnet configs, persisted state, keys.

Pure data and validation, shared by both datapaths and the CLI; nothing here touches
the network."""
