-- Wireshark dissector for the vnet wire (doc/wire-format.md, doc/security.md).
--
-- Install: mkdir -p ~/.local/lib/wireshark/plugins && cp contrib/wireshark/vnet.lua ~/.local/lib/wireshark/plugins/
-- or for one run: tshark -X lua_script:contrib/wireshark/vnet.lua ...  (fields: doc/wireshark.md)
--
-- UDP port 1798 carries the vnet messages: VARP (1), VUDP (2: EtherIP header + frame),
-- VFWD (3: a whole IPv4 packet, handed to Wireshark's IP dissector, which brings it back
-- here for its UDP 1798 or protocol 97 payload) and the sealed messages of secure
-- vnets (5; 4 is their format before sessions, shown as such).  IP protocol 97 carries our 18-byte EtherIP header (not RFC 3378's two
-- bytes) or a sealed message; anything else of protocol 97 goes on to Wireshark's own
-- RFC 3378 EtherIP dissector, which this one takes the place of.

local vnet = Proto("vnet", "vnet (EtherIP-in-UDP, VARP)")

local MSG = { [1] = "VARP", [2] = "VUDP", [3] = "VFWD", [4] = "sealed (format before sessions)", [5] = "sealed" }
local VARP_OP = { [1] = "request", [2] = "announce" }
local SEAL_TYPE = { [1] = "VARP message", [2] = "Ethernet frame", [3] = "challenge", [4] = "answer" }
local SEAL_LEVEL = { [1] = "auth", [2] = "conf" }

local f = {
    msg = ProtoField.uint16("vnet.msg", "Message id", base.DEC, MSG),
    opcode = ProtoField.uint16("vnet.opcode", "Opcode", base.DEC),
    id = ProtoField.string("vnet.id", "Vnet id"),
    id_bytes = ProtoField.bytes("vnet.id.bytes", "Vnet id (16 bytes)"),
    version = ProtoField.uint16("vnet.etherip.version", "EtherIP version word", base.HEX),
    superframe = ProtoField.bool("vnet.superframe", "Super-frame (longer than 1514 bytes)"),
    frame_len = ProtoField.uint32("vnet.frame_len", "Inner frame length", base.DEC),
    varp_op = ProtoField.uint16("vnet.varp.op", "VARP opcode", base.DEC, VARP_OP),
    varp_mac = ProtoField.ether("vnet.varp.mac", "VARP MAC"),
    varp_family = ProtoField.uint8("vnet.varp.family", "Address family", base.DEC),
    varp_addr = ProtoField.ipv4("vnet.varp.addr", "VARP address"),
    varp_ext = ProtoField.bytes("vnet.varp.ext", "Extension"),
    varp_features = ProtoField.uint16("vnet.varp.features", "Features", base.HEX),
    varp_super = ProtoField.bool("vnet.varp.super", "Accepts super-frames"),
    vfwd_src = ProtoField.ipv4("vnet.vfwd.src", "VFWD origin (inner source)"),
    vfwd_dst = ProtoField.ipv4("vnet.vfwd.dst", "VFWD inner destination"),
    vfwd_proto = ProtoField.uint8("vnet.vfwd.proto", "VFWD inner protocol", base.DEC),
    vfwd_ttl = ProtoField.uint8("vnet.vfwd.ttl", "VFWD inner TTL", base.DEC),
    vfwd_original = ProtoField.bool("vnet.vfwd.original", "Relay of the original forwarder"),
    seal_type = ProtoField.uint8("vnet.seal.type", "Sealed type", base.DEC, SEAL_TYPE),
    seal_level = ProtoField.uint8("vnet.seal.level", "Security level", base.DEC, SEAL_LEVEL),
    seal_keyid = ProtoField.uint8("vnet.seal.keyid", "Key id", base.DEC),
    seal_reserved = ProtoField.bytes("vnet.seal.reserved", "Reserved"),
    seal_sender = ProtoField.ipv4("vnet.seal.sender", "Sender"),
    seal_session = ProtoField.bytes("vnet.seal.session", "Session"),
    seal_counter = ProtoField.uint64("vnet.seal.counter", "Counter", base.DEC),
    seal_seq = ProtoField.uint64("vnet.seal.seq", "Sequence (format before sessions)", base.DEC),
    seal_body = ProtoField.bytes("vnet.seal.body", "Sealed body"),
    seal_tag = ProtoField.bytes("vnet.seal.tag", "Tag (Poly1305)"),
}
vnet.fields = f

local e_short = ProtoExpert.new("vnet.short", "Shorter than its headers", expert.group.MALFORMED, expert.severity.ERROR)
local e_version = ProtoExpert.new("vnet.bad_version", "EtherIP version word not accepted", expert.group.MALFORMED,
    expert.severity.WARN)
local e_old_seal = ProtoExpert.new("vnet.old_seal", "Sealed in the format before sessions: dropped as old-seal",
    expert.group.PROTOCOL, expert.severity.WARN)
vnet.experts = { e_short, e_version, e_old_seal }

local eth = Dissector.get("eth_withoutfcs")
local ip = Dissector.get("ip")
local data = Dissector.get("data")
local proto97 = DissectorTable.get("ip.proto")
local rfc3378 = proto97:get_dissector(97)  -- Wireshark's own etherip

-- The vnet id as vn prints it: "97", or the 39-character form if it has no short one.
local function vnet_text(r)
    local b = r:bytes()
    for i = 0, 13 do
        if b:get_index(i) ~= 0 then
            local parts = {}
            for j = 0, 7 do
                parts[#parts + 1] = string.format("%04x", r:range(j * 2, 2):uint())
            end
            return table.concat(parts, ":")
        end
    end
    return string.format("%x", r:range(14, 2):uint())
end

local function add_id(tree, r)
    local text = vnet_text(r)
    tree:add(f.id, r, text)
    tree:add(f.id_bytes, r)
    return text
end

local function info(pinfo, text)
    pinfo.cols.protocol = "VNET"
    pinfo.cols.info = text
end

-- The version word rule of wire.etherip_version_ok.
local function version_ok(b0, b1)
    return bit.rshift(b1, 4) == 4 or (bit.rshift(b0, 4) == 4 and b1 == 0)
end

local function hand_frame(tvb, pinfo, tree, sub)
    local len = tvb:len()
    sub:add(f.frame_len, len):set_generated()
    if len > 1514 then  -- present only then, so that the filter "vnet.superframe" finds them
        sub:add(f.superframe, true):set_generated()
    end
    eth:call(tvb, pinfo, tree)
end

-- 18-byte EtherIP header + Ethernet frame (VUDP after its 4 bytes, raw EtherIP).
local function dissect_etherip(tvb, pinfo, tree, sub, what)
    if tvb:len() < 18 + 14 then
        sub:add_proto_expert_info(e_short)
        return
    end
    local item = sub:add(f.version, tvb(0, 2))
    if not version_ok(tvb(0, 1):uint(), tvb(1, 1):uint()) then
        item:add_proto_expert_info(e_version)
    end
    local id = add_id(sub, tvb(2, 16))
    info(pinfo, string.format("%s vnet %s", what, id))
    hand_frame(tvb(18):tvb(), pinfo, tree, sub)
end

local function dissect_varp(tvb, pinfo, sub)
    if tvb:len() < 43 then
        sub:add_proto_expert_info(e_short)
        return
    end
    sub:add(f.varp_op, tvb(2, 2))
    local id = add_id(sub, tvb(4, 16))
    sub:add(f.varp_mac, tvb(20, 6))
    sub:add(f.varp_family, tvb(26, 1))
    sub:add(f.varp_addr, tvb(27, 4))
    local op = VARP_OP[tvb(2, 2):uint()] or string.format("opcode %d", tvb(2, 2):uint())
    info(pinfo, string.format("VARP %s vnet %s %s at %s", op, id, tostring(tvb(20, 6):ether()),
        tostring(tvb(27, 4):ipv4())))
    if tvb:len() >= 47 and tvb(43, 2):string() == "vf" then
        sub:add(f.varp_ext, tvb(43, 4))
        sub:add(f.varp_features, tvb(45, 2))
        sub:add(f.varp_super, tvb(45, 2), bit.band(tvb(45, 2):uint(), 1) == 1)
    end
end

-- The fields both sealed formats start with: type, level, vnet id, key id; returns the id.
local function add_seal_start(tvb, sub)
    sub:add(f.seal_type, tvb(2, 1))
    sub:add(f.seal_level, tvb(3, 1))
    local id = add_id(sub, tvb(4, 16))
    sub:add(f.seal_keyid, tvb(20, 1))
    return id
end

-- A sealed message (doc/security.md): a 50-byte header with the sender's session and
-- counter, the body, a 16-byte tag.
local function dissect_sealed(tvb, pinfo, tree, sub)
    if tvb:len() < 50 + 16 then
        sub:add_proto_expert_info(e_short)
        return
    end
    local kind, level = tvb(2, 1):uint(), tvb(3, 1):uint()
    local id = add_seal_start(tvb, sub)
    sub:add(f.seal_reserved, tvb(21, 1))
    sub:add(f.seal_sender, tvb(22, 4))
    sub:add(f.seal_session, tvb(26, 16))
    sub:add(f.seal_counter, tvb(42, 8))
    local n = tvb:len() - 50 - 16
    local body = tvb(50, n)
    sub:add(f.seal_body, body)
    sub:add(f.seal_tag, tvb(50 + n, 16))
    info(pinfo, string.format("sealed %s %s vnet %s key %d from %s session %s counter %s", SEAL_LEVEL[level] or "?",
        SEAL_TYPE[kind] or "?", id, tvb(20, 1):uint(), tostring(tvb(22, 4):ipv4()), tvb(26, 4):bytes():tohex(true) .. "..",
        tostring(tvb(42, 8):uint64())))
    if level ~= 1 then
        return  -- conf: the body is ciphertext
    end
    if kind == 2 and n >= 14 then
        hand_frame(body:tvb(), pinfo, tree, sub)
    elseif kind == 1 then
        dissect_varp(body:tvb(), pinfo, sub)
        pinfo.cols.info = "sealed auth " .. tostring(pinfo.cols.info)
    end
end

-- A sealed message of the format before sessions (message id 4: a 38-byte header with
-- the sender's address and a sequence number), which hosts now drop as old-seal.
local function dissect_old_sealed(tvb, pinfo, sub)
    sub:add_proto_expert_info(e_old_seal)
    if tvb:len() < 38 + 16 then
        sub:add_proto_expert_info(e_short)
        return
    end
    local id = add_seal_start(tvb, sub)
    sub:add(f.seal_reserved, tvb(21, 5))
    sub:add(f.seal_sender, tvb(26, 4))
    sub:add(f.seal_seq, tvb(30, 8))
    local n = tvb:len() - 38 - 16
    sub:add(f.seal_body, tvb(38, n))
    sub:add(f.seal_tag, tvb(38 + n, 16))
    info(pinfo, string.format("sealed, format before sessions (old-seal), vnet %s from %s seq %s", id,
        tostring(tvb(26, 4):ipv4()), tostring(tvb(30, 8):uint64())))
end

local function dissect_vfwd(tvb, pinfo, tree, sub)
    if tvb:len() < 4 + 20 then
        sub:add_proto_expert_info(e_short)
        return
    end
    local inner = tvb(4):tvb()
    sub:add(f.vfwd_ttl, inner(8, 1))
    sub:add(f.vfwd_proto, inner(9, 1))
    sub:add(f.vfwd_src, inner(12, 4))
    sub:add(f.vfwd_dst, inner(16, 4))
    local proto = inner(9, 1):uint()
    local original = inner(0, 1):uint() == 0 and inner(2, 2):uint() == 0
    if original then
        sub:add(f.vfwd_original, true):set_generated()
    end
    info(pinfo, string.format("VFWD from %s to %s", tostring(inner(12, 4):ipv4()), tostring(inner(16, 4):ipv4())))
    if not original then
        ip:call(inner, pinfo, tree)
        return
    end
    -- The original forwarder fills in only protocol, source and destination: the IP
    -- dissector cannot read that header, so the payload is taken from here.
    if proto == 17 and inner:len() >= 20 + 8 + 4 then
        vnet.dissector(inner(28):tvb(), pinfo, tree)
    elseif proto == 97 and inner:len() > 20 then
        vnet.dissector(inner(20):tvb(), pinfo, tree)
    else
        data:call(inner(20):tvb(), pinfo, tree)
    end
end

-- A UDP 1798 payload.
function vnet.dissector(tvb, pinfo, tree)
    local sub = tree:add(vnet, tvb())
    if tvb:len() < 4 then
        sub:add_proto_expert_info(e_short)
        return
    end
    local id = tvb(0, 2):uint()
    sub:add(f.msg, tvb(0, 2))
    if id == 5 then
        dissect_sealed(tvb, pinfo, tree, sub)
        return
    elseif id == 4 then
        dissect_old_sealed(tvb, pinfo, sub)
        return
    end
    sub:add(f.opcode, tvb(2, 2))
    if id == 1 then
        dissect_varp(tvb, pinfo, sub)
    elseif id == 2 then
        dissect_etherip(tvb(4):tvb(), pinfo, tree, sub, "VUDP")
    elseif id == 3 then
        dissect_vfwd(tvb, pinfo, tree, sub)
    else
        info(pinfo, string.format("unknown message id %d", id))
    end
end

-- An IP protocol 97 payload: ours if its first bytes say so, else RFC 3378's.
local vnet_etherip = Proto("vnet_etherip", "vnet raw EtherIP")

local function is_ours(tvb)
    local n = tvb:len()
    if n < 2 then
        return false
    end
    local b0, b1 = tvb(0, 1):uint(), tvb(1, 1):uint()
    if b0 == 0 and (b1 == 5 or b1 == 4) then
        return n >= (b1 == 5 and 66 or 54) and tvb(2, 1):uint() == 2
            and (tvb(3, 1):uint() == 1 or tvb(3, 1):uint() == 2)
    end
    return n >= 18 + 14 and version_ok(b0, b1)
end

function vnet_etherip.dissector(tvb, pinfo, tree)
    if not is_ours(tvb) then
        if rfc3378 then
            return rfc3378:call(tvb, pinfo, tree)
        end
        return 0
    end
    local sub = tree:add(vnet, tvb())
    local msg = tvb(0, 2):uint()
    if msg == 5 then
        sub:add(f.msg, tvb(0, 2))
        dissect_sealed(tvb, pinfo, tree, sub)
    elseif msg == 4 then
        sub:add(f.msg, tvb(0, 2))
        dissect_old_sealed(tvb, pinfo, sub)
    else
        dissect_etherip(tvb, pinfo, tree, sub, "EtherIP")
    end
    return tvb:len()
end

DissectorTable.get("udp.port"):add(1798, vnet)
proto97:add(97, vnet_etherip)
