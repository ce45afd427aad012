// Live updates for the doctors' dashboard: the page listens to its Server-Sent Events stream
// and re-reads itself when a case changes. Patient text is only ever set as textContent.
(() => {
  "use strict";
  const page = document.body.dataset.page;
  const source = document.body.dataset.events;

  function age(since) {
    const s = Math.max(0, Math.floor((Date.now() - since.getTime()) / 1000));
    if (s < 60) return s + " s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + " min";
    const h = Math.floor(m / 60);
    if (h < 24) return h + " h " + String(m % 60).padStart(2, "0") + " min";
    return Math.floor(h / 24) + " d " + (h % 24) + " h";
  }
  function tickAges() {
    for (const el of document.querySelectorAll("[data-since]")) {
      el.textContent = age(new Date(el.dataset.since));
    }
  }
  setInterval(tickAges, 15000);
  if (!source) return;

  const live = document.getElementById("live");
  function show(state, text) {
    if (!live) return;
    live.dataset.state = state;
    live.querySelector(".text").textContent = text;
  }

  // Replace the parts of the page listed in `ids` with their fresh versions.
  async function refresh(ids) {
    // Marked as a refresh: the page updating itself is not the doctor acting, so an open tab
    // does not keep an idle sign-in alive.
    const res = await fetch(location.pathname, {
      credentials: "same-origin", headers: {"X-CareBot-Refresh": "1"},
    });
    if (!res.ok || res.redirected) { location.reload(); return; }  // signed out: show login
    const fresh = new DOMParser().parseFromString(await res.text(), "text/html");
    for (const id of ids) {
      const now = document.getElementById(id), next = fresh.getElementById(id);
      if (now && next && !busy(now)) now.replaceWith(next);
    }
    tickAges();
  }
  // A form someone is typing into is left alone.
  function busy(el) {
    if (el.contains(document.activeElement) && document.activeElement !== document.body) return true;
    return [...el.querySelectorAll("textarea, input[type=text]")].some(f => f.value.trim());
  }
  let pending = null, timer = null;
  function soon(ids) {
    pending = new Set([...(pending || []), ...ids]);
    clearTimeout(timer);
    timer = setTimeout(() => { const list = [...pending]; pending = null; refresh(list); }, 150);
  }

  function appendMessage(event) {
    const list = document.getElementById("transcript");
    if (!list) return;
    const item = document.createElement("li");
    item.className = "msg " + (event.kind === "patient" ? "patient" : "doctor");
    const meta = document.createElement("div");
    meta.className = "meta";
    const who = document.createElement("strong");
    who.textContent = event.kind === "patient" ? "Patient" : "Doctor" + (event.actor ? " · " + event.actor : "");
    const time = document.createElement("time");
    time.textContent = "just now";
    meta.append(who, " ", time);
    const text = document.createElement("div");
    text.className = "text";
    text.textContent = event.text || "";
    item.append(meta, text);
    list.append(item);
    item.scrollIntoView({block: "nearest"});
  }

  const panels = page === "queue" ? ["queue"] : ["case-head", "actions", "audit"];
  const stream = new EventSource(source);
  stream.addEventListener("open", () => show("on", "Live"));
  stream.addEventListener("error", () => {
    // A refused stream (signed out, session expired) closes for good: reload to sign in.
    if (stream.readyState === EventSource.CLOSED) location.reload();
    else show("off", "Reconnecting…");
  });
  stream.addEventListener("ready", () => {
    show("on", "Live");
    soon(page === "queue" ? panels : [...panels, "transcript"]);
  });
  stream.addEventListener("case", message => {
    const event = JSON.parse(message.data);
    if (page === "case" && (event.kind === "patient" || event.kind === "doctor")) appendMessage(event);
    else soon(panels);
  });
})();
