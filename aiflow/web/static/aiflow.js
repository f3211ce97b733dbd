// aiflow pages: live parts by server-sent events. Every fragment inserted here was rendered (and
// escaped) by the server; text from a log goes in as text nodes.
"use strict";

function setLive(text, on) {
  const live = document.getElementById("live");
  if (live) { live.textContent = text; live.classList.toggle("off", !on); }
}

function followExecution(url) {
  const source = new EventSource(url);
  source.onmessage = (m) => {
    const data = JSON.parse(m.data);
    for (const [id, html] of Object.entries(data.parts || {})) {
      const el = document.getElementById(id);
      if (el) el.innerHTML = html;
    }
    if (location.hash) {  // keep a linked try in view as the table is redrawn
      const target = document.getElementById(decodeURIComponent(location.hash.slice(1)));
      if (target) target.classList.add("at");
    }
    setLive("live", true);
  };
  source.addEventListener("end", () => { source.close(); setLive("finished", false); });
  source.addEventListener("problem", (m) => setLive("waiting: " + JSON.parse(m.data).detail, false));
  source.onerror = () => setLive("reconnecting…", false);
}

function followLog(pre) {
  const source = new EventSource(pre.dataset.logStream);
  setLive("following", true);
  source.onmessage = (m) => {
    const data = JSON.parse(m.data);
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.appendChild(document.createTextNode(data.text));
    const none = document.getElementById("no-log");
    if (none) none.remove();
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  };
  source.addEventListener("end", (m) => { source.close(); setLive("ended: " + JSON.parse(m.data).status, false); });
  source.addEventListener("problem", (m) => setLive("waiting: " + JSON.parse(m.data).detail, false));
  source.onerror = () => setLive("reconnecting…", false);
}

function tailEvents(box) {
  let source = null;
  box.addEventListener("change", () => {
    if (source) { source.close(); source = null; }
    if (!box.checked) return;
    source = new EventSource(box.dataset.eventsStream);
    source.onmessage = (m) => {
      const tbody = document.getElementById("events");
      const empty = tbody.querySelector("tr.empty");
      if (empty) empty.remove();
      tbody.insertAdjacentHTML("afterbegin", JSON.parse(m.data).row);
    };
    source.addEventListener("problem", (m) => { alert(JSON.parse(m.data).detail); box.checked = false; source.close(); });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const execution = document.querySelector("[data-execution-stream]");
  if (execution && !document.getElementById("live").classList.contains("off")) followExecution(execution.dataset.executionStream);
  const log = document.querySelector("[data-log-stream]");
  if (log) followLog(log);
  const tail = document.querySelector("[data-events-stream]");
  if (tail) tailEvents(tail);
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (e) => { if (!confirm(form.dataset.confirm)) e.preventDefault(); });
  }
});
