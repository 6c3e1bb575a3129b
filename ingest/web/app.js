// chatflow's browser client: plain JavaScript over the public API
// (docs/PROTOCOL.md). REST for reads and changes, one WebSocket for live
// events, typing, presence and receipts.
"use strict";

const $ = (id) => document.getElementById(id);
const QUICK = ["👍", "❤️", "😂"];

const S = {
  token: localStorage.getItem("chatflow.token"),
  user: localStorage.getItem("chatflow.user"),
  device: localStorage.getItem("chatflow.device"),
  ws: null,
  convs: new Map(), // cid → list entry
  open: null, // cid
  conv: null, // details of the open conversation
  messages: new Map(), // seq → message, of the open conversation
  hasMore: false,
  loadingOlder: false,
  presence: new Map(), // user → {online, last_seen}
  typing: new Map(), // cid → Map(user → timer)
  lastTyping: 0,
  replyTo: null,
  file: null, // the file to send with the next message
  delivered: new Map(), // cid → highest seq to acknowledge
  deliveredTimer: null,
};

if (!S.device) {
  S.device = "web-" + Math.random().toString(36).slice(2, 10);
  localStorage.setItem("chatflow.device", S.device);
}

async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: Object.assign(
      { "content-type": "application/json" },
      S.token ? { authorization: "Bearer " + S.token } : {},
    ),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await res.json().catch(() => ({}));
  if (res.status === 401 && path !== "/v1/dev/token") logout();
  if (!res.ok) throw new Error((data.error && data.error.message) || res.statusText);
  return data;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function time(iso) {
  const d = new Date(iso);
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function newId() {
  return (crypto.randomUUID ? crypto.randomUUID() : Date.now() + "-" + Math.random()).replace(/[^A-Za-z0-9-]/g, "");
}

// ---- session ----

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const user = $("login-user").value.trim();
  try {
    const { token } = await api("POST", "/v1/dev/token", { user_id: user });
    S.token = token;
    S.user = user;
    localStorage.setItem("chatflow.token", token);
    localStorage.setItem("chatflow.user", user);
    start();
  } catch (e) {
    $("login-error").textContent = e.message;
    $("login-error").hidden = false;
  }
});

$("logout").addEventListener("click", logout);

function logout() {
  localStorage.removeItem("chatflow.token");
  localStorage.removeItem("chatflow.user");
  S.token = S.user = null;
  if (S.ws) S.ws.close();
  location.reload();
}

function start() {
  $("login").hidden = true;
  $("app").hidden = false;
  $("me").textContent = S.user;
  loadConversations();
  connect();
}

// ---- live socket ----

function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const url = `${proto}//${location.host}/v1/ws?device_id=${encodeURIComponent(S.device)}&token=${encodeURIComponent(S.token)}`;
  const ws = new WebSocket(url);
  S.ws = ws;
  ws.onopen = () => ws.send(JSON.stringify({ type: "resume", cursors: {} }));
  ws.onmessage = (m) => {
    try {
      onFrame(JSON.parse(m.data));
    } catch (e) {
      console.warn("frame", e);
    }
  };
  ws.onclose = () => {
    if (S.ws === ws && S.token) setTimeout(connect, 1000);
  };
}

setInterval(() => send({ type: "ping" }), 25000);

function send(frame) {
  if (S.ws && S.ws.readyState === WebSocket.OPEN) S.ws.send(JSON.stringify(frame));
}

function onFrame(f) {
  switch (f.type) {
    case "event":
      return onEvent(f);
    case "typing":
      return onTyping(f);
    case "presence":
      S.presence.set(f.user_id, { online: f.online, last_seen: f.last_seen });
      renderList();
      if (S.conv) renderHeader();
      return;
    case "resumed":
      return loadConversations();
    case "error":
      console.warn("server:", f.code, f.message);
  }
}

function onEvent(e) {
  const cid = e.conversation_id;
  const entry = S.convs.get(cid);
  const open = cid === S.open;
  switch (e.kind) {
    case "message_posted": {
      const m = Object.assign({ deleted: false, reactions: {} }, e.data);
      if (!entry) return refreshUntilListed(cid);
      entry.last_message = m;
      entry.last_seq = Math.max(entry.last_seq, e.seq);
      entry.last_activity_at = e.at;
      if (m.sender_id !== S.user) {
        acknowledge(cid, e.seq);
        clearTyping(cid, m.sender_id);
        if (open && document.visibilityState === "visible") markRead(e.seq);
        else entry.unread_count += 1;
      }
      if (open) {
        S.messages.set(m.seq, m);
        appendMessage(m, true);
      }
      renderList();
      return;
    }
    case "message_edited":
    case "message_deleted":
    case "reaction_added":
    case "reaction_removed":
      if (open) return patchMessage(e);
      return;
    case "read":
    case "delivered": {
      if (e.actor_id === S.user && e.kind === "read" && entry) {
        // Read on another of my devices.
        if (entry.last_message && e.data.seq >= entry.last_message.seq) entry.unread_count = 0;
        renderList();
      }
      if (open && S.conv) {
        const m = S.conv.members.find((x) => x.user_id === e.actor_id);
        if (m) {
          if (e.kind === "read") m.last_read_seq = Math.max(m.last_read_seq, e.data.seq);
          m.last_delivered_seq = Math.max(m.last_delivered_seq, e.data.seq);
          renderStatuses();
        }
      }
      return;
    }
    default:
      // Membership and conversation changes: reload what shows them.
      refreshUntilListed(cid);
      if (open) loadDetails();
  }
}

function acknowledge(cid, seq) {
  S.delivered.set(cid, Math.max(S.delivered.get(cid) || -1, seq));
  if (S.deliveredTimer) return;
  S.deliveredTimer = setTimeout(() => {
    for (const [c, s] of S.delivered) send({ type: "delivered", conversation_id: c, seq: s });
    S.delivered.clear();
    S.deliveredTimer = null;
  }, 300);
}

function markRead(seq) {
  if (!S.open) return;
  send({ type: "read", conversation_id: S.open, seq });
  const entry = S.convs.get(S.open);
  if (entry) entry.unread_count = 0;
}

function onTyping(f) {
  if (f.user_id === S.user) return;
  // Typing travels on its own topic: it may arrive after the message it
  // announced. A signal older than the user's last message is stale.
  const entry = S.convs.get(f.conversation_id);
  const last = entry && entry.last_message;
  if (last && last.sender_id === f.user_id && f.at && f.at <= last.sent_at) return;
  let users = S.typing.get(f.conversation_id);
  if (!users) S.typing.set(f.conversation_id, (users = new Map()));
  clearTimeout(users.get(f.user_id));
  users.set(f.user_id, setTimeout(() => clearTyping(f.conversation_id, f.user_id), f.expires_in_ms || 5000));
  renderTyping();
}

function clearTyping(cid, user) {
  const users = S.typing.get(cid);
  if (!users || !users.has(user)) return;
  clearTimeout(users.get(user));
  users.delete(user);
  renderTyping();
}

function renderTyping() {
  const users = [...(S.typing.get(S.open) || new Map()).keys()];
  $("typing").textContent = users.length ? `${users.join(", ")} ${users.length > 1 ? "are" : "is"} typing…` : "";
}

// ---- conversation list ----

async function loadConversations() {
  const { conversations } = await api("GET", "/v1/conversations");
  S.convs = new Map(conversations.map((c) => [c.conversation_id, c]));
  for (const c of conversations) {
    if (c.peer && !S.presence.has(c.peer)) {
      S.presence.set(c.peer, { online: false, last_seen: null });
      api("GET", `/v1/users/${encodeURIComponent(c.peer)}/presence`)
        .then((p) => {
          S.presence.set(c.peer, p);
          renderList();
          if (S.conv) renderHeader();
        })
        .catch(() => {});
    }
  }
  renderList();
}

// The store may apply an event a moment after it reached us live.
async function refreshUntilListed(cid, tries = 10) {
  await loadConversations();
  if (!S.convs.has(cid) && tries > 0) setTimeout(() => refreshUntilListed(cid, tries - 1), 200);
}

function title(c) {
  return c.kind === "direct" ? c.peer || "direct" : c.name || "group";
}

function renderList() {
  const list = $("conversations");
  list.replaceChildren();
  const convs = [...S.convs.values()].sort((a, b) => (b.last_activity_at || "").localeCompare(a.last_activity_at || ""));
  for (const c of convs) {
    const li = el("li", c.conversation_id === S.open ? "active" : "");
    li.dataset.cid = c.conversation_id;
    const dot = el("span", "dot");
    if (c.peer && (S.presence.get(c.peer) || {}).online) dot.classList.add("on");
    if (!c.peer) dot.style.visibility = "hidden";
    li.append(dot, el("span", "name", title(c)));
    if (c.unread_count > 0 && c.conversation_id !== S.open) {
      li.append(el("span", "badge" + (c.muted ? " muted" : ""), c.unread_count > 999 ? "999+" : String(c.unread_count)));
    } else {
      li.append(el("span"));
    }
    const m = c.last_message;
    const text = m && (m.body || (m.attachments && m.attachments.length ? `📎 ${m.attachments[0].name}` : ""));
    const preview = m ? (m.deleted ? "message deleted" : `${m.sender_id === S.user ? "you" : m.sender_id}: ${text}`) : "no messages yet";
    li.append(el("span", "preview", preview));
    li.addEventListener("click", () => openConversation(c.conversation_id));
    list.append(li);
  }
}

$("new-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const members = $("new-members").value.split(/[\s,]+/).filter(Boolean);
  const name = $("new-name").value.trim();
  const kind = members.length === 1 && !name ? "direct" : "group";
  try {
    const c = await api("POST", "/v1/conversations", { kind, name: name || undefined, members });
    $("new-members").value = $("new-name").value = "";
    await loadConversations();
    if (!S.convs.has(c.conversation_id)) {
      S.convs.set(c.conversation_id, {
        conversation_id: c.conversation_id, kind: c.kind, name: c.name, role: c.role,
        peer: kind === "direct" ? members[0] : null, last_seq: c.last_seq, unread_count: 0,
        last_message: null, muted: false, last_activity_at: new Date().toISOString(),
      });
      refreshUntilListed(c.conversation_id);
    }
    openConversation(c.conversation_id);
  } catch (e) {
    alert(e.message);
  }
});

// ---- one conversation ----

async function openConversation(cid) {
  S.open = cid;
  S.messages.clear();
  S.replyTo = null;
  $("replying").hidden = true;
  $("empty").hidden = true;
  $("conversation").hidden = false;
  $("messages").replaceChildren();
  renderList();
  await loadDetails();
  const page = await api("GET", `/v1/conversations/${encodeURIComponent(cid)}/messages?limit=50`);
  if (S.open !== cid) return;
  S.hasMore = page.has_more;
  for (const m of page.messages) S.messages.set(m.seq, m);
  renderMessages();
  // Opening a conversation reads it.
  if (page.messages.some((m) => m.sender_id !== S.user)) markRead(Math.max(...page.messages.map((m) => m.seq)));
  renderList();
  $("input").focus();
}

async function loadDetails() {
  const cid = S.open;
  const conv = await api("GET", `/v1/conversations/${encodeURIComponent(cid)}`);
  if (S.open !== cid) return;
  S.conv = conv;
  renderHeader();
  renderStatuses();
  renderTyping();
}

function renderHeader() {
  const c = S.conv;
  const entry = S.convs.get(c.conversation_id) || {};
  const peer = entry.peer || (c.members.find((m) => m.user_id !== S.user) || {}).user_id;
  $("title").textContent = c.kind === "direct" ? peer || "direct" : c.name || "group";
  let sub;
  if (c.kind === "direct" && peer) {
    const p = S.presence.get(peer) || {};
    sub = p.online ? "online" : p.last_seen ? `last seen ${new Date(p.last_seen).toLocaleString()}` : "offline";
  } else {
    sub = c.members.map((m) => m.user_id + (m.role !== "member" ? ` (${m.role})` : "")).join(", ");
  }
  $("subtitle").textContent = sub;
  $("add-form").hidden = c.kind === "direct" || !["owner", "admin"].includes(c.role);
}

$("add-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    await api("POST", `/v1/conversations/${encodeURIComponent(S.open)}/members`, { user_id: $("add-user").value.trim() });
    $("add-user").value = "";
  } catch (e) {
    alert(e.message);
  }
});

function renderMessages() {
  const box = $("messages");
  box.replaceChildren();
  if (S.hasMore) {
    const more = el("button", "more link", "earlier messages");
    more.addEventListener("click", loadOlder);
    box.append(more);
  }
  for (const seq of [...S.messages.keys()].sort((a, b) => a - b)) box.append(renderMessage(S.messages.get(seq)));
  box.scrollTop = box.scrollHeight;
}

async function loadOlder() {
  if (S.loadingOlder || !S.hasMore) return;
  S.loadingOlder = true;
  const cid = S.open;
  const first = Math.min(...S.messages.keys());
  try {
    const page = await api("GET", `/v1/conversations/${encodeURIComponent(cid)}/messages?limit=50&before=${first}`);
    if (S.open !== cid) return;
    const box = $("messages");
    const fromBottom = box.scrollHeight - box.scrollTop;
    S.hasMore = page.has_more;
    for (const m of page.messages) S.messages.set(m.seq, m);
    renderMessages();
    box.scrollTop = box.scrollHeight - fromBottom;
  } finally {
    S.loadingOlder = false;
  }
}

$("messages").addEventListener("scroll", () => {
  if ($("messages").scrollTop < 40) loadOlder();
});

function appendMessage(m, live) {
  const box = $("messages");
  const existing = box.querySelector(`[data-seq="${m.seq}"]`);
  const node = renderMessage(m);
  if (existing) return existing.replaceWith(node);
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 60;
  box.append(node);
  if (atBottom || (live && m.sender_id === S.user)) box.scrollTop = box.scrollHeight;
}

function status(m) {
  const others = (S.conv ? S.conv.members : []).filter((x) => x.user_id !== S.user);
  if (!others.length) return ["sent", "✓ sent"];
  if (others.every((x) => x.last_read_seq >= m.seq)) return ["read", "✓✓ read"];
  if (others.every((x) => Math.max(x.last_delivered_seq, x.last_read_seq) >= m.seq)) return ["delivered", "✓✓ delivered"];
  return ["sent", "✓ sent"];
}

function renderStatuses() {
  for (const node of document.querySelectorAll(".msg.mine")) {
    const m = S.messages.get(Number(node.dataset.seq));
    const s = node.querySelector(".status");
    if (!m || !s || m.deleted) continue;
    const [cls, text] = status(m);
    s.className = "status " + cls;
    s.textContent = text;
  }
}

function renderMessage(m) {
  const mine = m.sender_id === S.user;
  const div = el("div", "msg" + (mine ? " mine" : "") + (m.deleted ? " deleted" : ""));
  div.dataset.seq = m.seq;
  if (!mine && S.conv && S.conv.kind === "group") div.append(el("div", "who", m.sender_id));
  if (m.reply_to !== undefined && m.reply_to !== null) {
    const q = S.messages.get(m.reply_to);
    div.append(el("div", "quote", q ? `${q.sender_id}: ${q.deleted ? "message deleted" : q.body}` : `reply to #${m.reply_to}`));
  }
  if (m.deleted || m.body) div.append(el("div", "body", m.deleted ? "message deleted" : m.body));
  if (!m.deleted && m.attachments && m.attachments.length) div.append(files(m));
  const reactions = el("div", "reactions");
  for (const [emoji, users] of Object.entries(m.reactions || {})) {
    const b = el("button", users.includes(S.user) ? "mine" : "", `${emoji} ${users.length}`);
    b.title = users.join(", ");
    b.addEventListener("click", () => react(m, emoji));
    reactions.append(b);
  }
  if (reactions.children.length) div.append(reactions);
  const meta = el("div", "meta");
  if (m.edited_at) meta.append(el("span", "", "edited"));
  meta.append(el("span", "", time(m.sent_at)));
  if (mine && !m.deleted) {
    const [cls, text] = status(m);
    meta.append(el("span", "status " + cls, text));
  }
  div.append(meta);
  if (!m.deleted) div.append(actions(m, mine));
  return div;
}

// ---- attachments ----

function size(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

// A link to an attachment's bytes, good for a few minutes.
async function fileLink(m, a) {
  const cid = encodeURIComponent(m.conversation_id || S.open);
  const link = await api("GET", `/v1/conversations/${cid}/messages/${m.seq}/attachments/${encodeURIComponent(a.id)}`);
  return link.url;
}

function files(m) {
  const box = el("div", "files");
  for (const a of m.attachments) {
    if (a.content_type.startsWith("image/")) {
      const img = el("img");
      img.alt = a.name;
      img.title = `${a.name} (${size(a.size)})`;
      if (a.thumbnail) img.src = `data:image/jpeg;base64,${a.thumbnail}`;
      fileLink(m, a).then((url) => (img.src = url)).catch(() => {});
      box.append(img);
    } else {
      const link = el("a", "file", `📄 ${a.name} (${size(a.size)})`);
      link.href = "#";
      link.addEventListener("click", async (ev) => {
        ev.preventDefault();
        window.open(await fileLink(m, a), "_blank", "noopener");
      });
      box.append(link);
    }
  }
  return box;
}

// A JPEG of at most 96 px a side, base64, for an image: shown at once
// while the file itself loads.
async function thumbnailOf(file) {
  if (!file.type.startsWith("image/") || file.type === "image/svg+xml") return undefined;
  try {
    const bitmap = await createImageBitmap(file);
    const scale = Math.min(1, 96 / Math.max(bitmap.width, bitmap.height));
    const canvas = document.createElement("canvas");
    canvas.width = Math.max(1, Math.round(bitmap.width * scale));
    canvas.height = Math.max(1, Math.round(bitmap.height * scale));
    canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    const data = canvas.toDataURL("image/jpeg", 0.6).split(",")[1];
    return data.length <= 10000 ? data : undefined;
  } catch {
    return undefined;
  }
}

// Announces the file, PUTs its bytes where the server says, and answers
// what the message names.
async function upload(file) {
  const type = file.type || "application/octet-stream";
  const ticket = await api("POST", "/v1/uploads", { name: file.name, content_type: type, size: file.size });
  const res = await fetch(ticket.upload_url, { method: "PUT", headers: { "content-type": type }, body: file });
  if (!res.ok) {
    const data = await res.json().catch(() => ({}));
    throw new Error((data.error && data.error.message) || `upload failed: ${res.status}`);
  }
  const ref = { upload_id: ticket.upload_id };
  const thumbnail = await thumbnailOf(file);
  if (thumbnail) ref.thumbnail = thumbnail;
  return { ref, shown: { id: ticket.upload_id, name: file.name, content_type: type, size: file.size, thumbnail } };
}

function renderAttached() {
  const box = $("attached");
  box.replaceChildren();
  box.hidden = !S.file;
  if (!S.file) return;
  box.append(el("span", "", `📎 ${S.file.name} (${size(S.file.size)})`));
  const drop = el("button", "link", "✕");
  drop.type = "button";
  drop.title = "Remove the file";
  drop.addEventListener("click", () => {
    S.file = null;
    $("file").value = "";
    renderAttached();
  });
  box.append(drop);
}

$("file").addEventListener("change", () => {
  S.file = $("file").files[0] || null;
  renderAttached();
});

function actions(m, mine) {
  const bar = el("div", "actions");
  const add = (label, title, fn) => {
    const b = el("button", "", label);
    b.title = title;
    b.addEventListener("click", fn);
    bar.append(b);
  };
  add("↩", "reply", () => {
    S.replyTo = m.seq;
    $("replying").textContent = `replying to ${m.sender_id}: ${m.body}`;
    $("replying").hidden = false;
    $("input").focus();
  });
  for (const e of QUICK) add(e, "react " + e, () => react(m, e));
  if (mine) {
    add("✎", "edit", async () => {
      const body = prompt("Edit message", m.body);
      if (body && body !== m.body) await call("PATCH", `/messages/${m.seq}`, { body });
    });
  }
  const role = S.conv ? S.conv.role : "member";
  if (mine || role === "owner" || role === "admin") {
    add("🗑", "delete", async () => {
      if (confirm("Delete this message for everyone?")) await call("DELETE", `/messages/${m.seq}`);
    });
  }
  return bar;
}

async function call(method, path, body) {
  try {
    return await api(method, `/v1/conversations/${encodeURIComponent(S.open)}${path}`, body);
  } catch (e) {
    alert(e.message);
  }
}

function react(m, emoji) {
  const mine = (m.reactions[emoji] || []).includes(S.user);
  return call(mine ? "DELETE" : "PUT", `/messages/${m.seq}/reactions/${encodeURIComponent(emoji)}`);
}

function patchMessage(e) {
  const seq = e.data.seq;
  const m = S.messages.get(seq);
  if (!m) return;
  if (e.kind === "message_edited") {
    m.body = e.data.body;
    m.edited_at = e.at;
  } else if (e.kind === "message_deleted") {
    m.deleted = true;
    delete m.body;
    m.reactions = {};
  } else {
    const users = (m.reactions[e.data.emoji] = m.reactions[e.data.emoji] || []);
    const i = users.indexOf(e.actor_id);
    if (e.kind === "reaction_added" && i < 0) users.push(e.actor_id);
    if (e.kind === "reaction_removed" && i >= 0) users.splice(i, 1);
    if (!users.length) delete m.reactions[e.data.emoji];
  }
  appendMessage(m, false);
}

$("input").addEventListener("input", () => {
  const now = Date.now();
  if (S.open && now - S.lastTyping > 2500 && $("input").value.trim()) {
    S.lastTyping = now;
    send({ type: "typing", conversation_id: S.open });
  }
});

$("input").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey) {
    ev.preventDefault();
    $("composer").requestSubmit();
  }
});

$("composer").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const body = $("input").value.trim();
  const file = S.file;
  if ((!body && !file) || !S.open) return;
  const req = { client_msg_id: newId(), body };
  if (S.replyTo !== null) req.reply_to = S.replyTo;
  $("input").value = "";
  S.replyTo = null;
  S.file = null;
  $("file").value = "";
  renderAttached();
  $("replying").hidden = true;
  S.lastTyping = 0;
  const cid = S.open;
  try {
    let shown = [];
    if (file) {
      const sent = await upload(file);
      req.attachments = [sent.ref];
      shown = [sent.shown];
    }
    const ack = await api("POST", `/v1/conversations/${encodeURIComponent(cid)}/messages`, req);
    if (S.open === cid && !S.messages.has(ack.seq)) {
      const m = { seq: ack.seq, conversation_id: cid, message_id: ack.message_id, sender_id: S.user, body, sent_at: ack.sent_at, deleted: false, reactions: {}, reply_to: req.reply_to, attachments: shown };
      S.messages.set(ack.seq, m);
      appendMessage(m, true);
    }
  } catch (e) {
    $("input").value = body;
    S.file = file;
    renderAttached();
    alert(e.message);
  }
});

document.addEventListener("visibilitychange", () => {
  const entry = S.convs.get(S.open);
  if (document.visibilityState === "visible" && entry && entry.unread_count > 0 && entry.last_message) markRead(entry.last_message.seq);
});

// ---- search ----

let searchTimer = null;
$("search").addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(search, 200);
});
$("search-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  search();
});

async function search() {
  const q = $("search").value;
  const box = $("search-results");
  if (!q.trim()) {
    box.hidden = true;
    return;
  }
  try {
    const { hits } = await api("GET", `/v1/search?q=${encodeURIComponent(q)}&limit=20`);
    box.replaceChildren();
    if (!hits.length) box.append(el("div", "muted", "no messages found"));
    for (const h of hits) {
      const div = el("div", "hit");
      const c = S.convs.get(h.conversation_id);
      div.append(el("div", "muted", `${c ? title(c) : h.conversation_id} · ${h.sender_id} · ${time(h.sent_at)}`));
      const snippet = el("div");
      snippet.innerHTML = h.snippet; // HTML-escaped by the server, matches in <mark>
      div.append(snippet);
      div.addEventListener("click", () => openConversation(h.conversation_id));
      box.append(div);
    }
    box.hidden = false;
  } catch (e) {
    box.replaceChildren(el("div", "error", e.message));
    box.hidden = false;
  }
}

if (S.token && S.user) start();
