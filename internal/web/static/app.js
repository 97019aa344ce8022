// lockstep UI: the only script. Pages work without it; it adds the live
// log, which follows a running job over Server-Sent Events.
"use strict";
(function () {
  var pre = document.getElementById("log");
  if (!pre || !pre.dataset.stream || !window.EventSource) {
    return;
  }
  var status = document.getElementById("log-live");
  var url = pre.dataset.stream + "?offset=" + encodeURIComponent(pre.dataset.offset || "0");
  var source = new EventSource(url);
  var pending = [];
  var scheduled = false;

  function nearBottom() {
    return pre.scrollHeight - pre.scrollTop - pre.clientHeight < 40;
  }
  // Lines are appended once per frame, so that a job writing thousands of
  // lines a second does not freeze the page.
  function flush() {
    scheduled = false;
    if (pending.length === 0) {
      return;
    }
    var follow = nearBottom();
    pre.appendChild(document.createTextNode(pending.join("")));
    pending = [];
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
    pending.push(ev.data + "\n");
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
      state.textContent = end.state;
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
