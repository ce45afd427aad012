// The chat is this browser's HttpOnly cookie: the page never sees or sends a chat id.
const log = document.getElementById("log"), form = document.getElementById("form"),
      input = document.getElementById("text"), send = document.getElementById("send");
const UNREACHABLE = "Sorry, I could not reach CareBot. Please try again. In an emergency call your local emergency number.";
function bubble(cls, text) {
  const div = document.createElement("div");
  div.className = "msg " + cls; div.textContent = text;
  log.appendChild(div); div.scrollIntoView(); return div;
}
async function history() {
  try {
    const res = await fetch("/api/history");
    if (!res.ok) return;
    for (const m of (await res.json()).messages) {
      bubble(m.role === "patient" ? "you" : "bot " + (m.role === "doctor" ? "doctor" : ""), m.text);
    }
  } catch (err) { /* the conversation still works; history shows next time */ }
}
function listen() {
  // Doctors' messages and case notices; EventSource reconnects by itself.
  const events = new EventSource("/api/events");
  events.onmessage = e => {
    const event = JSON.parse(e.data);
    bubble("bot pushed", event.text);
  };
}
async function post(text) {
  bubble("you", text);
  const out = bubble("bot draft", "…");
  send.disabled = true;
  try {
    const res = await fetch("/api/messages", {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({message_id: crypto.randomUUID(), text})});
    if (!res.ok) { out.textContent = "Sorry, that message could not be sent (" + res.status + "). Please try a shorter message."; return; }
    const reader = res.body.getReader(), decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, {stream: true});
      let nl;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const event = JSON.parse(buffer.slice(0, nl)); buffer = buffer.slice(nl + 1);
        if (event.type === "warning") { out.textContent = event.text; out.className = "msg bot emergency"; }
        if (event.type === "reply") { out.textContent = event.text; out.className = "msg bot " + event.kind; }
      }
    }
  } catch (err) {
    out.textContent = UNREACHABLE;
  } finally { send.disabled = false; input.focus(); }
}
async function action(path, pending) {
  const out = bubble("bot draft", pending);
  try {
    const res = await fetch(path, {method: "POST", headers: {"Content-Type": "application/json"}, body: "{}"});
    const reply = await res.json();
    out.textContent = reply.text; out.className = "msg bot " + reply.kind;
    return reply;
  } catch (err) { out.textContent = UNREACHABLE; }
}
form.addEventListener("submit", e => { e.preventDefault(); const t = input.value; input.value = ""; post(t); });
input.addEventListener("keydown", e => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); } });
document.getElementById("doctor").addEventListener("click", () => action("/api/doctor", "…"));
document.getElementById("forget").addEventListener("click", async () => {
  if (!confirm("Delete this chat? If a doctor looked at your case, that is a medical record: the clinic is asked to delete it too, and staff decide. This cannot be undone.")) return;
  const reply = await action("/api/forget", "…");
  if (reply && reply.kind !== "error") { log.replaceChildren(); bubble("bot notice", reply.text); }
});
history().then(listen);
