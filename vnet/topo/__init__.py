"""Topologies: one file describes a multi-host lab, and every host builds its own part.

doc/topology.md describes the file, the derived vnet ids and the `vn topo` commands.
The modules: `model` (what a loaded file holds), `load` (YAML with line marks, checks),
`containerlab` (a containerlab file read as a topology), `ids` (derived ids and names),
`netns` (veth pairs into node namespaces), `record` (what a topology made on this
host), `apply` (realize and destroy a host's part), `show`, `graph`, `hypervisor`.
"""
