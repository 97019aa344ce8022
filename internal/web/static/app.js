// lockstep UI: the only script. Pages work without it; it unfolds the
// filter forms on wide screens, shows the end of a finished run's log, and
// adds the live log, which follows a running job over Server-Sent Events.
"use strict";
(function () {
  // Filter forms are folded on phones, where they would fill the screen,
  // and open on wider screens.
  if (window.matchMedia && window.matchMedia("(min-width: 641px)").matches) {
    document.querySelectorAll("details.filters-fold").forEach(function (d) {
      d.open = true;
    });
  }

  var pre = document.getElementById("log");
  if (!pre) {
    return;
  }
  // The end of the log is what says why a run ended: show it, unless a
  // line is linked (#L42), which the browser scrolls to.
  if (!/^#L\d+$/.test(window.location.hash)) {
    pre.scrollTop = pre.scrollHeight;
  }
  if (!pre.dataset.stream || !window.EventSource) {
    return;
  }
  var icons = { success: "✓", failure: "✗", error: "⚠", aborted: "■", running: "▶", scheduled: "…", pending: "○" };
  var status = document.getElementById("log-live");
  var next = parseInt(pre.dataset.nextLine || "1", 10);
  var url = pre.dataset.stream + "&offset=" + encodeURIComponent(pre.dataset.offset || "0");
  var source = new EventSource(url);
  var pending = [];
  var scheduled = false;

  function nearBottom() {
    return pre.scrollHeight - pre.scrollTop - pre.clientHeight < 40;
  }
  // line returns a numbered line whose content is html, which the server
  // rendered from the log with every character escaped.
  function line(html) {
    var n = next++;
    var el = document.createElement("span");
    el.className = "ln";
    el.id = "L" + n;
    var a = document.createElement("a");
    a.className = "lnum";
    a.href = "#L" + n;
    a.setAttribute("aria-label", "line " + n);
    a.textContent = String(n);
    var text = document.createElement("span");
    text.className = "lt";
    text.innerHTML = html;
    el.appendChild(a);
    el.appendChild(text);
    return el;
  }
  // Lines are appended once per frame, so that a job writing thousands of
  // lines a second does not freeze the page.
  function flush() {
    scheduled = false;
    if (pending.length === 0) {
      return;
    }
    var follow = nearBottom();
    var frag = document.createDocumentFragment();
    pending.forEach(function (html) {
      frag.appendChild(line(html));
    });
    pending = [];
    pre.appendChild(frag);
    if (follow) {
      pre.scrollTop = pre.scrollHeight;
    }
  }
  source.onopen = function () {
    if (status) {
      status.textContent = "Live: new lines appear as the job writes them.";
    }
  };
  source.onmessage = function (ev) {
    pending.push(ev.data);
    if (!scheduled) {
      scheduled = true;
      window.requestAnimationFrame(flush);
    }
  };
  source.addEventListener("end", function (ev) {
    source.close();
    flush();
    var end = {};
    try {
      end = JSON.parse(ev.data);
    } catch (e) {
      end = {};
    }
    var state = document.querySelector("#run-state .state");
    if (state && end.state) {
      state.className = "state state-" + end.state;
      state.textContent = (icons[end.state] || "") + " " + end.state;
    }
    if (status) {
      status.classList.add("ended");
      status.textContent = "The run ended" + (end.state ? ": " + end.state : "") + ". Reload the page for its timeline.";
    }
  });
  source.onerror = function () {
    if (status && source.readyState === EventSource.CONNECTING) {
      status.textContent = "Connection lost; reconnecting…";
    }
  };
})();
